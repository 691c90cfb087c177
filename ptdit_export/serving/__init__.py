"""Serving engine folders on Triton Inference Server (see docs/serving.md).

    triton_repo_from_engine("engines/demo", "repo", instances=2)    # write a model repository
    with TritonServer("repo", ports=free_ports()) as server:           # start a real tritonserver
        image = generate(server.http_url, "a red circle")             # ask it for a picture

Nothing here imports tritonclient or starts a server until asked.
"""

from ptdit_export.serving.client import ServingError, generate
from ptdit_export.serving.repository import RepoConfig, triton_repo_from_engine
from ptdit_export.serving.server import ServerNotFound, TritonServer, find_tritonserver, free_ports

__all__ = [
    "RepoConfig",
    "ServerNotFound",
    "ServingError",
    "TritonServer",
    "find_tritonserver",
    "free_ports",
    "generate",
    "triton_repo_from_engine",
]
