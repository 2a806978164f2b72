-- The Prefect server's database beside MLflow's (POSTGRES_DB creates only that one).
CREATE DATABASE prefect;
