"""Seamline's library, one module per concern (config, manifest, validation, labels, detection,
crops, classifier, evaluation, registry, prediction, catalogue, serving); its stages' entry points
are `pipelines.stages`, the `seamline` command is `pipelines.cli`. Never imports Prefect or Scrapy."""

import os

# No outbound usage data from any Seamline process (the CLI, every stage, the flows and the Prefect
# server they start, which inherits this environment): Prefect's server analytics (whose heartbeat
# logs an error on every offline run) and client telemetry, MLflow's telemetry. A variable already
# set wins. Set here because MLflow reads its switch when it is imported.
TELEMETRY_OFF = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
for _name, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_name, _value)
