"""VideoModel: a kserve.Model answering v2 `infer` with label, name, score and top-k per video."""

from __future__ import annotations

import asyncio
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from autox_video.serving import inputs, metrics
from autox_video.serving.batcher import Batcher
from autox_video.serving.decode import Decoder
from autox_video.serving.errors import BadInput, PredictorError
from autox_video.serving.runtimes import Runtime
from autox_video.serving.sdk import InferOutput, InferRequest, InferResponse, InvalidInput, kserve


class VideoModel(kserve.Model):  # type: ignore[misc]
    """One served network: decoding in a thread pool, requests batched, bad input answered 400."""

    def __init__(
        self,
        name: str,
        runtime: Runtime,
        limits: inputs.Limits,
        *,
        max_batch: int = 8,
        batch_wait_s: float = 0.005,
        decode_workers: int | None = None,
    ) -> None:
        super().__init__(name)
        self.runtime = runtime
        self.limits = limits
        self.max_batch = max_batch
        self.decoder = Decoder(runtime.contract, limits.max_seconds)
        workers = decode_workers or min(8, os.cpu_count() or 1)
        self.decode_pool = ThreadPoolExecutor(workers, thread_name_prefix="autox-decode")
        # One forward pass at a time: the runtime itself uses every core.
        self.model_pool = ThreadPoolExecutor(1, thread_name_prefix="autox-model")
        self.batcher = Batcher(runtime.run, self.model_pool, max_batch=max_batch, wait_s=batch_wait_s)

    def load(self) -> bool:
        """Ready once a forward pass has run (the first request does not pay for warm-up); a transformer's
        predictor warms itself, and may start after it (KServe starts both at once)."""
        if self.runtime.kind != "remote":
            self.runtime.run(np.zeros((1, *self.runtime.contract.input_shape), np.float32))
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict[str, Any]]:
        """v2 metadata: one of `video` (base64 bytes) or `uri` per video."""
        return [
            {"name": "video", "datatype": "BYTES", "shape": [-1]},
            {"name": "uri", "datatype": "BYTES", "shape": [-1]},
        ]

    def get_output_types(self) -> list[dict[str, Any]]:
        """v2 metadata: label, name, score, top-k labels and scores per video (timeline with `granularity`)."""
        return [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "name", "datatype": "BYTES", "shape": [-1]},
            {"name": "score", "datatype": "FP32", "shape": [-1]},
            {"name": "topk_label", "datatype": "INT64", "shape": [-1, -1]},
            {"name": "topk_score", "datatype": "FP32", "shape": [-1, -1]},
            {"name": "timeline", "datatype": "BYTES", "shape": [-1]},
        ]

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> InferResponse:
        """Answer one v2 request; BadInput -> 400 with its message, the server keeps serving."""
        start = time.perf_counter()
        try:
            response = await self._answer(payload)
        except BadInput as err:
            metrics.REQUESTS.labels("bad_input").inc()
            metrics.ERRORS.labels(err.reason).inc()
            raise InvalidInput(str(err)) from None
        except PredictorError as err:  # answered 503/502 with its message (server.py); the next may work
            metrics.REQUESTS.labels("predictor_error").inc()
            metrics.ERRORS.labels(err.reason).inc()
            raise
        except Exception:
            metrics.REQUESTS.labels("error").inc()
            metrics.ERRORS.labels("internal").inc()
            raise
        finally:
            metrics.LATENCY.observe(time.perf_counter() - start)
        metrics.REQUESTS.labels("ok").inc()
        return response

    async def _answer(self, payload: Any) -> InferResponse:
        if not isinstance(payload, InferRequest):
            raise BadInput("use the Open Inference Protocol v2 route: POST /v2/models/NAME/infer", "bad_input")
        spec = self.runtime.contract
        opts = inputs.options(payload.parameters, spec.num_classes)
        items = inputs.items(payload.inputs)
        results = await asyncio.gather(*(self._one(item, opts) for item in items))
        metrics.VIDEOS.inc(len(items))
        return self._response(payload, [p for p, _ in results], [t for _, t in results], opts)

    async def _one(self, item: inputs.Item, opts: inputs.Options) -> tuple[np.ndarray, dict[str, Any] | None]:
        """One video's probabilities (and timeline), fetched and decoded off the event loop."""
        loop = asyncio.get_running_loop()
        path: Path = await loop.run_in_executor(self.decode_pool, inputs.fetch, item, self.limits)
        try:
            clips = await loop.run_in_executor(self.decode_pool, self.decoder.decode, path, item.where)
            probs = await self.batcher.submit(clips)
            timeline = None
            if opts.granularity:
                from autox_video.serving import timeline as timeline_mod

                timeline = await loop.run_in_executor(
                    self.model_pool, timeline_mod.predict, path, self.runtime, opts.granularity, self.max_batch
                )
            return probs, timeline
        finally:
            path.unlink(missing_ok=True)

    def _response(
        self, request: InferRequest, probs: list[np.ndarray], timelines: list[Any], opts: inputs.Options
    ) -> InferResponse:
        names = self.runtime.contract.class_names
        p = np.stack(probs)
        order = np.argsort(-p, axis=1, kind="stable")[:, : opts.top_k]
        top = np.take_along_axis(p, order, axis=1)
        n, k = len(probs), opts.top_k
        outputs = [
            InferOutput("label", [n], "INT64", [int(i) for i in order[:, 0]]),
            InferOutput("name", [n], "BYTES", [names[int(i)] for i in order[:, 0]]),
            InferOutput("score", [n], "FP32", [float(s) for s in top[:, 0]]),
            InferOutput("topk_label", [n, k], "INT64", [int(i) for i in order.ravel()]),
            InferOutput("topk_score", [n, k], "FP32", [float(s) for s in top.ravel()]),
        ]
        if opts.granularity:
            outputs.append(InferOutput("timeline", [n], "BYTES", [json.dumps(t) for t in timelines]))
        return InferResponse(
            response_id=request.id or "", model_name=self.name, infer_outputs=outputs, use_binary_outputs=False
        )
