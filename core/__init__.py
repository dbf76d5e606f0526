"""The science of perflaw: readers, data-quality measures, laws, models and training.

Nothing here imports FastAPI, SQLAlchemy, settings or logging configuration.
"""
