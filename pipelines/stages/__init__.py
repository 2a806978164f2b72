"""One entry point per pipeline stage, named after its `dvc.yaml` stage (and the weekly flow's
`register` and `index` steps): `python -m pipelines.stages.<stage>`. Each is the stage's edge —
argv, params, the files and the MLflow run it writes — over the library in `pipelines/`.
Nothing but the flows, the tests and the benchmarks imports a stage module."""
