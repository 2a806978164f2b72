"""The pipeline's steps as plain Python: config, manifest, validate, label, detect, crop, train,
evaluate, registry, predict. Never imports Prefect or Scrapy."""
