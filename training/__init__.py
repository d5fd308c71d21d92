"""Training: models made from a collection (the cross-encoder reranker). Uses rag; rag never uses this."""
