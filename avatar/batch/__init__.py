"""``avatar batch JOBS.yaml``: many fits and renders, on this machine or a Ray cluster.

- :mod:`avatar.batch.jobs`: the job file, read and checked whole before anything runs;
- :mod:`avatar.batch.records`: what "finished" means for a job's output, and the
  records that let a re-run skip finished jobs;
- :mod:`avatar.batch.execute`: where jobs run (a local process pool, or Ray:
  started on this machine, or an existing cluster); each job is one ``avatar``
  command in its own process;
- :mod:`avatar.batch.run`: the scheduler (dependencies, retries, progress, report);
- :mod:`avatar.batch.bench`: jobs per minute with 1 and 2 workers.
"""
