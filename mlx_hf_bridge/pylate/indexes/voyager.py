"""``pylate.indexes.Voyager`` on the ``voyager`` package (no torch), with PyLate 1.6's folder layout.

The folder holds PyLate's files (``index.voyager`` and the two id-mapping pickles), so an index
built by real PyLate loads here and the reverse. Unlike PyLate, every file is written to a temp
name and renamed, and embeddings are handed to voyager as one float32 matrix (works on voyager
2.1 and 2.2; PyLate 1.6's list of rows breaks on 2.2).
"""

from __future__ import annotations

import os
import pickle

import numpy as np

from ...indexes import as_token_matrices
from ...io_utils import atomic_file
from ..utils import iter_batch
from .base import Base


def _voyager():
    try:
        import voyager
    except ImportError:
        raise ImportError('Voyager is not installed. Please install it with: `pip install "voyager>=2.0"`.') from None
    return voyager


class Voyager(Base):
    is_end_to_end_index = False

    def __init__(self, index_folder: str = "indexes", index_name: str = "colbert", override: bool = False,
                 embedding_size: int = 128, M: int = 64, ef_construction: int = 200, ef_search: int = 200) -> None:
        self.ef_search, self.embedding_size = ef_search, embedding_size
        folder = os.path.join(index_folder, index_name)
        os.makedirs(folder, exist_ok=True)
        self.index_path = os.path.join(folder, "index.voyager")
        self.documents_ids_to_embeddings_path = os.path.join(folder, "document_ids_to_embeddings.pkl")
        self.embeddings_to_documents_ids_path = os.path.join(folder, "embeddings_to_documents_ids.pkl")
        voyager = _voyager()
        if os.path.exists(self.index_path) and not override:
            try:
                with open(self.index_path, "rb") as f:
                    self.index = voyager.Index.load(f)
                self._load(self.documents_ids_to_embeddings_path)
                self._load(self.embeddings_to_documents_ids_path)
            except Exception as error:
                raise ValueError(f"The Voyager index at {folder} is damaged ({type(error).__name__}: {error}). "
                                 f"Rebuild it with override=True.") from error
            if self.index.num_dimensions != embedding_size:
                raise ValueError(f"The Voyager index at {folder} holds {self.index.num_dimensions}-dimensional "
                                 f"embeddings, not embedding_size={embedding_size}.")
            return
        for path in (self.documents_ids_to_embeddings_path, self.embeddings_to_documents_ids_path):
            if os.path.exists(path):
                os.remove(path)
        self.index = voyager.Index(voyager.Space.Cosine, num_dimensions=embedding_size, M=M,
                                   ef_construction=ef_construction)
        self._save_index()

    def _save_index(self) -> None:
        with atomic_file(self.index_path) as tmp:
            self.index.save(str(tmp))

    @staticmethod
    def _load(path) -> dict:
        if not os.path.exists(path):
            return {}
        with open(path, "rb") as f:
            return pickle.load(f)

    def _save_mappings(self, documents_ids_to_embeddings: dict, embeddings_to_documents_ids: dict) -> None:
        for path, mapping in ((self.documents_ids_to_embeddings_path, documents_ids_to_embeddings),
                              (self.embeddings_to_documents_ids_path, embeddings_to_documents_ids)):
            with atomic_file(path) as tmp, open(tmp, "wb") as f:
                pickle.dump(mapping, f)

    def _matrices(self, embeddings, what):
        matrices = as_token_matrices(embeddings, what)
        bad = [i for i, m in enumerate(matrices) if m.shape[1] != self.index.num_dimensions]
        if bad:
            raise ValueError(f"{what}[{bad[0]}] has {matrices[bad[0]].shape[1]}-dimensional tokens; the index "
                             f"holds {self.index.num_dimensions}-dimensional ones.")
        return matrices

    def add_documents(self, documents_ids, documents_embeddings, batch_size: int = 2000) -> "Voyager":
        if isinstance(documents_ids, (str, int)):
            documents_ids = [documents_ids]
        documents_embeddings = self._matrices(documents_embeddings, "documents_embeddings")
        if len(documents_embeddings) != len(documents_ids):
            raise ValueError(f"{len(documents_ids)} document ids for {len(documents_embeddings)} documents.")
        ids_to_embeddings = self._load(self.documents_ids_to_embeddings_path)
        embeddings_to_ids = self._load(self.embeddings_to_documents_ids_path)
        for docs, ids in zip(iter_batch(documents_embeddings, batch_size, desc=f"Adding documents to the index (bs={batch_size})"),
                             iter_batch(list(documents_ids), batch_size, tqdm_bar=False)):
            embedding_ids = self.index.add_items(np.ascontiguousarray(np.concatenate(docs), dtype=np.float32))
            total = 0
            for doc_id, doc in zip(ids, docs):
                doc_embedding_ids = list(embedding_ids[total:total + len(doc)])
                ids_to_embeddings[doc_id] = doc_embedding_ids
                embeddings_to_ids.update(dict.fromkeys(doc_embedding_ids, doc_id))
                total += len(doc)
        self._save_mappings(ids_to_embeddings, embeddings_to_ids)
        self._save_index()
        return self

    def remove_documents(self, documents_ids) -> "Voyager":
        ids_to_embeddings = self._load(self.documents_ids_to_embeddings_path)
        embeddings_to_ids = self._load(self.embeddings_to_documents_ids_path)
        missing = [i for i in documents_ids if i not in ids_to_embeddings]
        if missing:
            raise KeyError(f"Documents not in the index: {missing[:5]}")  # PyLate raises KeyError too
        for document_id in documents_ids:
            for embedding_id in ids_to_embeddings.pop(document_id):
                del embeddings_to_ids[embedding_id]
                self.index.mark_deleted(embedding_id)
        self._save_mappings(ids_to_embeddings, embeddings_to_ids)
        self._save_index()
        return self

    def __call__(self, queries_embeddings, k: int = 10) -> dict:
        embeddings_to_ids = self._load(self.embeddings_to_documents_ids_path)
        if not embeddings_to_ids:
            raise ValueError("Index is empty, add documents before querying.")
        if k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}.")
        k = min(k, len(embeddings_to_ids))
        queries = self._matrices(queries_embeddings, "queries_embeddings")
        indices, distances = self.index.query(np.ascontiguousarray(np.concatenate(queries), dtype=np.float32), k,
                                              query_ef=self.ef_search)
        splits = np.cumsum([len(q) for q in queries][:-1])
        documents = [[[embeddings_to_ids[t] for t in token] for token in chunk] for chunk in np.split(indices, splits)]
        return {"documents_ids": documents, "distances": [list(chunk) for chunk in np.split(distances, splits)]}

    def get_documents_embeddings(self, document_ids):
        ids_to_embeddings = self._load(self.documents_ids_to_embeddings_path)
        structure = [[ids_to_embeddings[i] for i in group] for group in document_ids]
        flat = [e for group in structure for doc in group for e in doc]
        vectors = self.index.get_vectors(flat) if flat else np.zeros((0, self.index.num_dimensions), np.float32)
        out, position = [], 0
        for group in structure:
            out.append([])
            for doc in group:
                out[-1].append(vectors[position:position + len(doc)])
                position += len(doc)
        return out
