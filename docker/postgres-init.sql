-- Run once by the postgres image on an empty volume (the image creates POSTGRES_DB = mlflow itself).
-- Optuna and MLflow need a database each: both keep their schema version in an Alembic table
-- `alembic_version`, and MLflow refuses a database that holds Optuna's.
CREATE DATABASE optuna;
