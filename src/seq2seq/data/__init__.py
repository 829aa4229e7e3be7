"""Corpora, tokenizers, vocabularies and batching."""
