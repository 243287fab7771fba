"""The REST API's wire models, shared by the server and every client. Pure pydantic, no FastAPI."""
