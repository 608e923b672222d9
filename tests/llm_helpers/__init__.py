"""Shared pieces of the LLM layer's tests."""
