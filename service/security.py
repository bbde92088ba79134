"""API keys: read keys may search, write keys may also change the catalogue."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer


class KeyCheck:
    """Bearer keys: read keys may search, write keys may also change the catalogue.

    With no keys configured every request is allowed (the server then binds to localhost).
    Keys are compared in constant time, against every configured key.
    """

    def __init__(self, read_keys: list[str], write_keys: list[str]) -> None:
        self.read = [k.encode() for k in read_keys]
        self.write = [k.encode() for k in write_keys]

    @property
    def open(self) -> bool:
        return not self.read and not self.write

    @staticmethod
    def _member(key: bytes, keys: list[bytes]) -> bool:
        found = False
        for k in keys:
            found |= hmac.compare_digest(key, k)
        return found

    def role(self, key: str | None) -> str | None:
        if key is None:
            return None
        raw = key.encode()
        if self._member(raw, self.write):
            return "write"
        if self._member(raw, self.read):
            return "read"
        return None


class AuthError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        self.status, self.detail = status, detail


_bearer = HTTPBearer(auto_error=False, description="an API key: read keys search, write keys also change the catalogue")


def require(need: str):
    def check(request: Request,
              creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        keys: KeyCheck = request.app.state.keys
        if keys.open:
            return
        role = keys.role(creds.credentials if creds else None)
        if role is None:
            raise AuthError(401, "missing or unknown API key: send 'Authorization: Bearer <key>'")
        if need == "write" and role != "write":
            raise AuthError(403, "this key may search but not change the catalogue (a write key is needed)")
    return check


def route_dependencies(keys: KeyCheck) -> tuple[list[DependsParam], list[DependsParam]]:
    """The (read, write) dependencies of the routers; with no keys configured nothing is checked, and
    the schema declares no security."""
    if keys.open:
        return [], []
    return [Depends(require("read"))], [Depends(require("write"))]
