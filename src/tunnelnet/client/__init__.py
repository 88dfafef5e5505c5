"""A small typed HTTP client of the controller (tunnelnet server)."""

from __future__ import annotations

from tunnelnet.client.http import Client, ClientError, ConflictError, NotFoundError, Resource

__all__ = ["Client", "ClientError", "ConflictError", "NotFoundError", "Resource"]
