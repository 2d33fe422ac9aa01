"""PyLate's ``indexes.base.Base``: the interface every index implements."""

from __future__ import annotations

from abc import ABC, abstractmethod


class Base(ABC):
    """End-to-end indexes (PLAID) return ranked results; token indexes (Voyager) return per-token hits."""

    @property
    @abstractmethod
    def is_end_to_end_index(self) -> bool: ...

    @abstractmethod
    def add_documents(self, documents_ids, documents_embeddings, batch_size: int): ...

    @abstractmethod
    def remove_documents(self, documents_ids): ...

    @abstractmethod
    def __call__(self, queries_embeddings, k: int = 5): ...

    @abstractmethod
    def get_documents_embeddings(self, documents_ids): ...
