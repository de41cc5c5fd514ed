"""The feedback experiment's two job kinds (experiment `generations`): a writer model samples documents in its own
cell (`GenerateJob`, after the parent's post-training job it reads), and the next generation's pretraining reads
them into its corpus (`GenerationPretrainJob`, from scratch, after that job).

The documents are one of the generate job's promised outputs (`documents` in DONE.json, with size and sha256), so a
changed or missing file reruns it, and a rerun finds it finished; the next generation's pretraining receives the
file's path as an input and records it in its corpus manifest (`generated`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..config import GeneratedCorpusConfig, GeneratedMix
from ..generation import GenerationConfig
from .jobs import Job, PretrainJob, StageCall


@dataclass(frozen=True)
class GenerateJob(Job):
    """Sample `generation.documents` documents from the model its one dependency hands on (a post-trained model of
    the parent arm), into the cell's generated.parquet; its `pipeline` is the parent's (world, corpus mix)."""

    generation: GenerationConfig = field(kw_only=True, hash=False, compare=False)
    kind: ClassVar[str] = "generate"

    def params(self) -> dict[str, Any]:
        return {**super().params(), "generation": self.generation.model_dump(mode="json")}

    def run(self, call: StageCall) -> dict:
        if not call.inputs.get("model_dir"):
            raise ValueError(f"{self.id}: the job it follows saved no model to write with")
        if call.stages.generate is None:
            raise ValueError(f"{self.id}: the stage set has no generate stage")
        path = call.stages.generate(
            call.model_dir(),
            call.cell,
            cfg=self.generation,
            world_cfg=self.pipeline.world,
            corpus_cfg=self.pipeline.corpus,
            seed=self.seed,
        )
        return {"documents": call.rel(Path(path))}


@dataclass(frozen=True)
class GenerationPretrainJob(PretrainJob):
    """Pretraining from scratch on the arm's corpus, `generated` of its AI discourse replaced by the documents its
    one dependency (a `GenerateJob`) wrote."""

    generated: GeneratedMix = field(kw_only=True, hash=False, compare=False)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "generated": self.generated.model_dump(mode="json")}

    def inputs(self, outputs: list[dict]) -> dict[str, str]:
        return {"generated_text": outputs[0]["documents"]}

    def run(self, call: StageCall) -> dict:
        path = call.input_path("generated_text")
        spec = GeneratedCorpusConfig(path=str(path), **self.generated.model_dump())
        cfg = self.pipeline.model_copy(update={"corpus": self.pipeline.corpus.model_copy(update={"generated": spec})})
        model_dir = call.stages.pretrain(cfg, call.cell)
        return {"model_dir": call.rel(Path(model_dir))}
