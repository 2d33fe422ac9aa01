"""Push a saved model folder to the Hugging Face Hub, the way sentence-transformers does.

The model is always saved to a local folder *first* and that folder is kept when anything goes
wrong, so a failed push never loses the trained model: every error message names the folder and
says how to retry without saving again (``local_model_path=<folder>``).

Endpoint and credentials follow ``huggingface_hub``: ``HF_ENDPOINT``, ``HF_TOKEN`` /
``huggingface-cli login``, ``HF_HUB_OFFLINE`` (must be unset to push).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from .io_utils import SaveError, map_errors, owned_name, owner_alive

__all__ = ["HubPushError", "push_to_hub"]


class HubPushError(OSError):
    """A push that failed after the model was saved; ``local_path`` holds the complete save."""

    def __init__(self, message: str, local_path: Path | None = None, status_code: int | None = None):
        super().__init__(message)
        self.local_path = local_path
        self.status_code = status_code


def _endpoint(api) -> str:
    return getattr(api, "endpoint", None) or os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _status_code(exc) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _is_connection_error(exc: BaseException) -> bool:
    """httpx / requests / socket failures to reach the server (refused, DNS, timeout, reset)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        name = type(exc).__name__
        module = type(exc).__module__ or ""
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        if module.startswith(("httpx", "httpcore", "requests", "urllib3")) and any(
            key in name for key in ("Connect", "Timeout", "Network", "Protocol", "ReadError", "WriteError")
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _explain(exc: BaseException, api, repo_id: str, local_path: Path, token, stage: str) -> HubPushError:
    """Turn a huggingface_hub / transport exception into one actionable message."""
    where = f"The model is saved at {local_path}"
    retry = f"retry with push_to_hub(..., local_model_path='{local_path}') (no new save needed)"
    endpoint = _endpoint(api)
    status = _status_code(exc)
    name = type(exc).__name__
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    if name == "OfflineModeIsEnabled":
        msg = (
            f"Cannot push to {repo_id}: offline mode is enabled (HF_HUB_OFFLINE=1). Unset HF_HUB_OFFLINE "
            f"in the environment before importing huggingface_hub, then {retry}. {where}."
        )
    elif status in (401,):
        from huggingface_hub import get_token

        no_token = token is None and get_token() is None
        hint = " No token was found." if no_token else " The token was rejected."
        msg = (
            f"Hub authentication failed (HTTP 401) while pushing to {repo_id} at {endpoint}.{hint} Run "
            f"`huggingface-cli login` (or `hf auth login`), set HF_TOKEN, or pass token=... with a "
            f"write token, then {retry}. {where}."
        )
    elif status == 403:
        msg = (
            f"Permission denied (HTTP 403) while pushing to {repo_id} at {endpoint}: the token cannot "
            f"write to this namespace. Use a token with write access (or your own namespace), then "
            f"{retry}. {where}."
        )
    elif status == 409 and stage == "create_repo":
        msg = (
            f"Repository {repo_id} already exists on {endpoint}. Pass exist_ok=True to push into it "
            f"(push_to_hub(..., local_model_path='{local_path}', exist_ok=True) reuses this save), or "
            f"choose another repo_id. {where}."
        )
    elif status == 404 or name in ("RepositoryNotFoundError", "RevisionNotFoundError"):
        msg = (
            f"Hub answered 404 while pushing to {repo_id} ({stage}): the repository or revision does not "
            f"exist or is not visible with this token ({detail}). {where}; {retry}."
        )
    elif status is not None and status >= 500:
        msg = (
            f"Hub server error (HTTP {status}) at {endpoint} during {stage} for {repo_id}: the Hub may be "
            f"temporarily unavailable; wait, then {retry}. {where}."
        )
    elif status == 429:
        msg = f"The Hub rate-limited the push to {repo_id} (HTTP 429). Wait, then {retry}. {where}."
    elif _is_connection_error(exc):
        msg = (
            f"Could not reach {endpoint} ({name}: {detail}) during {stage}. Check your network, proxy and "
            f"HF_ENDPOINT, then {retry}. {where}."
        )
    else:
        code = f"HTTP {status}, " if status else ""
        msg = f"Push to {repo_id} failed during {stage} ({code}{name}: {detail}). {where}; {retry}."
    return HubPushError(msg, local_path=local_path, status_code=status)


STAGING_STEM = "mlx-hf-bridge-push-"


def _new_staging_folder(repo_id: str) -> Path:
    """A temp folder named for this process; first removes those of pushes killed earlier (dead owners)."""
    root = Path(tempfile.gettempdir())
    for entry in root.glob(f"{STAGING_STEM}*"):
        if entry.is_dir() and owner_alive(entry) is False:
            shutil.rmtree(entry, ignore_errors=True)
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", repo_id).strip("-") or "model"
    folder = root / owned_name(f"{STAGING_STEM}{slug}.")
    with map_errors(folder, name_as=root):
        folder.mkdir(mode=0o700)
    return folder


def _default_commit_message(model_class: str) -> str:
    return f"Add new {model_class} model"


def push_to_hub(
    save_fn,
    repo_id: str,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    local_model_path: str | os.PathLike | None = None,
    exist_ok: bool = False,
    replace_model_card: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    card_fn=None,
    save_dir: str | os.PathLike | None = None,
    model_class: str = "ColBERT",
) -> str:
    """Save a model locally, then upload the folder to ``repo_id``; returns the commit URL.

    Mirrors ``SentenceTransformer.push_to_hub``: ``create_repo(exist_ok=exist_ok or create_pr)``,
    ``create_branch(revision, exist_ok=True)`` when ``revision`` is given, one ``upload_folder``
    commit, and the PR URL instead of the commit URL when ``create_pr``.

    Args:
        save_fn: ``save_fn(folder)`` writes the complete model folder (e.g. ``model.save``). Not
            called when ``local_model_path`` is given.
        repo_id: ``"namespace/name"``, or ``"name"`` for the token's own namespace.
        token: a write token; default is ``HF_TOKEN`` or the ``huggingface-cli login`` token.
        private: create the repo private (``None``: the Hub's default).
        commit_message: default ``"Add new <model_class> model"``.
        local_model_path: an already-saved folder, uploaded as is (no save, no card change).
        exist_ok: pushing into an existing repo is allowed; otherwise an existing repo is an error.
        replace_model_card: when the repo already has a README.md, overwrite it with ours. By
            default the Hub's existing card is kept and our README.md is not uploaded.
        revision: branch to push to (created from main if missing).
        create_pr: open a pull request instead of committing to the branch.
        card_fn: ``card_fn(folder, repo_id)`` writes README.md into the saved folder after
            ``save_fn``, knowing the final repo id (used in the card's usage snippets).
        save_dir: where to save before uploading. It is kept (other files in it are left alone).
            Default: a new temporary folder named for this process, deleted after a *successful*
            push and kept (and named) after a failed upload; temp folders of pushes killed earlier
            are removed by the next push.
        model_class: used in the default commit message.

    Raises:
        SaveError: the local save hit a full, read-only or forbidden disk (nothing half-written kept).
        HubPushError: any Hub failure (401, 403, 404, 409, 5xx, connection, offline mode); the
            message names ``local_path`` (the saved folder) and how to retry.
    """
    from huggingface_hub import HfApi

    if create_pr and revision not in (None, "main"):
        raise ValueError("create_pr=True opens a pull request against main; do not also pass revision.")
    created_tmp = False
    if local_model_path is not None:
        folder = Path(local_model_path)
        if not folder.is_dir():
            raise FileNotFoundError(f"local_model_path {folder} is not a folder; pass the saved model folder.")
    else:
        if save_fn is None:
            raise ValueError("push_to_hub needs save_fn (to save the model) or local_model_path.")
        if save_dir is not None:
            folder = Path(save_dir)
            folder.mkdir(parents=True, exist_ok=True)
        else:
            folder = _new_staging_folder(repo_id)
            created_tmp = True
        try:
            save_fn(str(folder))
        except SaveError as exc:
            if created_tmp:
                shutil.rmtree(folder, ignore_errors=True)
                raise SaveError(exc.errno, exc.filename, exc.needed, exc.free,
                                f"push_to_hub saves to a temp folder first; set TMPDIR to a disk with room "
                                f"or pass save_dir=... ({exc.detail})" if exc.detail else
                                "push_to_hub saves to a temp folder first; set TMPDIR to a disk with room",
                                exc.needed_at_least) from exc
            raise
        except BaseException:
            if created_tmp:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        if not folder.is_dir() or not any(folder.iterdir()):
            raise RuntimeError(f"save_fn did not write anything into {folder}.")

    api = HfApi(token=token)
    stage = "create_repo"
    try:
        repo_url = api.create_repo(repo_id=repo_id, private=private, repo_type=None, exist_ok=exist_ok or create_pr)
    except Exception as exc:
        raise _explain(exc, api, repo_id, folder, token, stage) from exc
    repo_id = repo_url.repo_id  # "name" -> "namespace/name"
    if local_model_path is None and card_fn is not None:
        try:
            card_fn(folder, repo_id)
        except Exception as exc:  # a local error, not a Hub one; the save is intact
            raise RuntimeError(
                f"Writing the model card failed ({type(exc).__name__}: {exc}). The model is saved at {folder}; "
                f"push it with push_to_hub(..., local_model_path='{folder}')."
            ) from exc
    try:
        if revision is not None:
            stage = "create_branch"
            api.create_branch(repo_id=repo_id, branch=revision, exist_ok=True)
        ignore = None
        if not replace_model_card and (folder / "README.md").exists():
            stage = "model card check"
            if api.file_exists(repo_id, "README.md", revision=revision):
                ignore = ["README.md"]  # keep the card that is already on the Hub
        stage = "upload_folder"
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            commit_message=commit_message or _default_commit_message(model_class),
            commit_description="",
            revision=revision,
            create_pr=create_pr,
            ignore_patterns=ignore,
        )
    except Exception as exc:
        raise _explain(exc, api, repo_id, folder, token, stage) from exc
    if created_tmp:
        shutil.rmtree(folder, ignore_errors=True)
    return info.pr_url if create_pr else info.commit_url


def push_model(model, repo_id: str, model_class: str, train_datasets=None, **kwargs) -> str:
    """``push_to_hub`` of a sentence-transformers-family model (dense or multi-vector): ``model.save`` the
    layout, write the README from ``model._card_info`` for the final repo id, upload (see :func:`push_to_hub`)."""
    from .model_card import write_model_card

    def card(folder, final_repo_id):
        write_model_card(folder, model._card_info(train_datasets=train_datasets, model_id=final_repo_id))

    return push_to_hub(lambda folder: model.save(folder, model_name=repo_id, create_model_card=False),
                       repo_id, model_class=model_class, card_fn=card, **kwargs)
