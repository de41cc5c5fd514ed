"""experiments stage: grids of arms x seeds x post-training strategies, run as resumable self-contained cells.

Public API:
    load_experiment(name_or_path, overrides) -> ExperimentConfig     (config.py)
    pipeline_config(exp, arm, seed) -> PipelineConfig                 (config.py)
    plan_jobs(exp) -> list[Job]; run_experiment(exp, run_dir, ...)    (runner.py)
    run_states(run_dir); collect_results(run_dir); load_results(run_dir)
    Executor / LocalExecutor / InlineExecutor                         (executor.py)
    stats: seed_interval, paired_difference, fieller_ratio, stickiness, interpolate_curve, log_kl_grid
           (t interval over seed means; Fieller's interval for ratios; ESTIMATOR_DESCRIPTION says how)
    aggregate: with_aggregates(df, control) -> the seed-null rows persisted in results.parquet
"""
