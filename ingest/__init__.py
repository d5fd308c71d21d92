"""The ingestion job: files to chunks to vectors in Qdrant, incrementally."""
