"""Core library of the offline RAG app: settings, models, store, retrieval, answering."""

from rag.offline import prepare_environment

prepare_environment()
