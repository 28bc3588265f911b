"""One loaded model serving many requests: concurrent photos are scored in batches.

Requests hand their photo to a single worker thread and wait on a future, so the
event loop never runs inference, the model and its encoders are loaded (and run once)
at start, and photos that arrive together share one forward pass, through
`predict_files`, the function `phototag annotate` uses.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from phototag.errors import PhototagError
from phototag.evaluation.decoding import TopK
from phototag.evaluation.predictions import Prediction
from phototag.features.extract import create_sources, is_descriptor
from phototag.library.annotation import Scorer, predict_files
from phototag.models.base import decoded_tags

_STOP = None


class PhotoUnreadable(PhototagError):
    """A photo the model could not read; the message names the file and the reason."""


class Tagger:
    """Suggests keywords for photo files with one model, batching concurrent requests.

    `max_batch` bounds how many waiting photos go through one forward pass.
    """

    def __init__(
        self,
        model: Scorer,
        *,
        store_root: str | Path | None = None,
        runtime: str = "onnx",
        max_batch: int = 16,
    ) -> None:
        self.model = model
        self.sources = create_sources(model.required_inputs().sources, runtime=runtime)
        for name, source in self.sources.items():  # the first request pays no lazy set-up
            if not is_descriptor(name):
                size = source.preprocess.input_size  # type: ignore[union-attr]
                source.forward_pixels(np.zeros((1, size, size, 3), np.uint8), ["pooled"])  # type: ignore[union-attr]
        self.store_root = store_root
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[str, Future[Prediction]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="phototag-tagger", daemon=True)
        self._thread.start()

    def submit(self, path: str | Path) -> Future[Prediction]:
        """A future of the model's one-row `Prediction` for the photo (its scores for
        every vocabulary label, and its quantity or label set where it makes them)."""
        future: Future[Prediction] = Future()
        if not self._thread.is_alive():
            raise RuntimeError("the tagger is closed")
        self._queue.put((str(path), future))
        return future

    async def suggest(self, path: str | Path, top_k: int | None = None) -> list[tuple[str, float]]:
        """``(label, score)`` pairs, best first: the model's own decoder, or the `top_k` best.

        Raises `PhotoUnreadable` for a file that cannot be decoded.
        """
        prediction = await asyncio.wrap_future(self.submit(path))
        decoder = TopK(top_k) if top_k else self.model.decoder_
        return decoded_tags(prediction, self.model.vocabulary_, decoder)[0]

    def close(self) -> None:
        """Finish the photos already handed in, then stop the worker."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    # ---------------------------------------------------------------- worker
    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            self._run([(p, f) for p, f in batch if f.set_running_or_notify_cancel()])
            if stop:
                return

    def _run(self, batch: list[tuple[str, Future[Prediction]]]) -> None:
        if not batch:
            return
        paths = list(dict.fromkeys(path for path, _ in batch))
        try:
            results = {
                r.path: r
                for r in predict_files(
                    paths,
                    self.model,
                    store_root=self.store_root,
                    batch_size=len(paths),
                    progress=False,
                    sources=self.sources,
                )  # fmt: skip
            }
        except Exception as error:  # noqa: BLE001 - handed to every waiting request
            for _, future in batch:
                future.set_exception(error)
            return
        for path, future in batch:
            result = results[path]
            if result.prediction is None:
                future.set_exception(PhotoUnreadable(result.error))
            else:
                future.set_result(result.prediction)
