"""experiments stage: the grid machinery. Grids of arms x seeds x post-training strategies, run as resumable
self-contained cells; what a run's results mean is `hyperstition.analysis` (which this package imports, never the
other way round).

Public API:
    plan_jobs(exp) -> list[Job]                                       (plan.py; jobs.py: one class per job kind)
    execute_job(run_dir, job, inputs, runtime)                        (cell.py: one job in its cell directory)
    run_experiment(exp, run_dir, ...) -> RunSummary                   (runner.py; schedule.py; stale.py)
    Executor / LocalExecutor / InlineExecutor                         (executor.py)
    StageSet / register_stages / stage_set                            (stageset.py: real stages.py, simulate.py)
    create_or_open / RunLock / write_provenance                       (rundir.py: writing a run directory)
"""
