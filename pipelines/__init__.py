"""Seamline's library, one module per concern (config, manifest, validation, labels, detection,
crops, classifier, evaluation, registry, prediction, catalogue, serving); its stages' entry points
are `pipelines.stages`, the `seamline` command is `pipelines.cli`. Never imports Prefect or Scrapy."""
