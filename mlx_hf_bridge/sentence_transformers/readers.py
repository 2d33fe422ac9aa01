"""``InputExample`` (ST's pre-v3 data structure, still read by ``from_input_examples`` and
``LabelAccuracyEvaluator``) and ST's ``LoggingHandler``."""

from __future__ import annotations

import logging

import tqdm


class InputExample:
    """One example: ``texts``, a ``label`` and a ``guid`` (ST's class)."""

    def __init__(self, guid: str = "", texts: list[str] | None = None, label: int | float = 0):
        self.guid = guid
        self.texts = texts
        self.label = label

    def __str__(self):
        return "<InputExample> label: {}, texts: {}".format(str(self.label), "; ".join(self.texts))


class LoggingHandler(logging.Handler):
    """Writes log records through ``tqdm.write`` so they do not break progress bars (ST's handler)."""

    def emit(self, record) -> None:
        try:
            tqdm.tqdm.write(self.format(record))
            self.flush()
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception:  # noqa: BLE001  (logging's contract: report, do not raise)
            self.handleError(record)
