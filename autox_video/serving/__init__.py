"""`autox-video serve`: an Open Inference Protocol v2 endpoint on the KServe model server SDK."""
