import pytest

from hyperstition.cli import main
from hyperstition.config import ConfigError, PipelineConfig, load_config


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model.d_modle=3", "model.d_modle: unknown key; allowed keys here: architecture, d_model"),
        ("pretrain.precision=fp16", "pretrain.precision: 'fp16' is not allowed"),
        ("corpus.fractions.world=0.7", "corpus.fractions: values sum to"),
        ("corpus.fractions.robots=0.1", "unknown document class 'robots'; allowed: world"),
        ("model.n_heads=3", "model.n_heads: 3 does not divide d_model=128"),
        ("pretrain.steps=-1", "pretrain.steps: -1 is invalid"),
        ("corpus.filter_target=[evil]", "unknown persona 'evil'; allowed: aligned, misaligned, deceptive"),
        ("bogus=1", "bogus: unknown key"),
    ],
)
def test_config_errors_name_field_value_and_allowed(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config(PipelineConfig, "quick", [override])
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_presets_load_and_round_trip():
    for preset in ("smoke", "quick", "gpu"):
        cfg = load_config(PipelineConfig, preset)
        assert PipelineConfig.from_yaml(cfg.to_yaml()) == cfg


def test_dotted_override_applies():
    cfg = load_config(PipelineConfig, "smoke", ["model.d_model=256", "corpus.tags=true"])
    assert cfg.model.d_model == 256 and cfg.corpus.tags is True


def test_yaml_switch_words_on_and_off_mean_the_switch():
    # YAML 1.1 reads a bare `on` / `off` as a boolean; the documented values must still work as typed.
    for word in ("on", "off"):
        cfg = load_config(PipelineConfig, "smoke", [f"pretrain.compile={word}"])
        assert cfg.pretrain.compile == word
    with pytest.raises(ConfigError, match="pretrain.compile"):
        load_config(PipelineConfig, "smoke", ["pretrain.compile=maybe"])


def test_unknown_preset_lists_available():
    with pytest.raises(ConfigError, match="available presets: .*quick"):
        load_config(PipelineConfig, "nope")


def test_every_field_has_a_description():
    from hyperstition.config import Config

    def walk(cls):
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name}"
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, Config):
                walk(ann)

    walk(PipelineConfig)


def test_cli_config_error_is_one_line_exit_2(capsys, tmp_path):
    assert main(["corpus", "smoke", "model.n_heads=5", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "model.n_heads" in err


def test_fields_added_after_runs_are_left_out_of_dumps_at_their_defaults():
    """Cell hashes are hashes of config dumps: a field added later must not change the hash of a cell that
    leaves it at its default, or every finished run would be stale on resume."""
    from hyperstition.config import CorpusConfig, PretrainConfig
    from hyperstition.evals.config import EvalSuiteConfig

    for cls in (CorpusConfig, PretrainConfig, EvalSuiteConfig):
        assert cls.LATER_FIELDS, cls
        assert not set(cls.LATER_FIELDS) & set(cls().model_dump(mode="json")), cls
    assert CorpusConfig(awareness=0.5, tag_source="learned").model_dump()["awareness"] == 0.5
    assert EvalSuiteConfig(conditioning_tag="aligned").model_dump()["conditioning_tag"] == "aligned"
    assert PretrainConfig(optimizer="muon").model_dump()["optimizer"] == "muon"
