"""`rag serve`: an OpenAI-compatible HTTP API over the app's collections, with the chat UI on the same server."""
