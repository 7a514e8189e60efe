"""The operator API (FastAPI): routes, request models, read models."""
