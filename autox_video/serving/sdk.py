"""The KServe SDK, imported with a clean argv: it parses sys.argv at import and would take our flags."""

from __future__ import annotations

import sys

_argv, sys.argv = sys.argv, sys.argv[:1]
try:
    import kserve
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse, RequestedOutput
finally:
    sys.argv = _argv

__all__ = ["InferInput", "InferOutput", "InferRequest", "InferResponse", "InvalidInput", "RequestedOutput", "kserve"]
