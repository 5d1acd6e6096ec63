"""A hostile AT Protocol PDS and a PLC directory on 127.0.0.1 (security cases 44 and 45).

`HostilePds` speaks just enough XRPC for Hayon's connect: createSession (the reply is whatever
the test says: a victim's DID, a handle it does not own, a refresh JWT with a silly `exp`, a
100 KiB header), getProfile, getRecord, describeRepo, getSession and deleteSession, shaped like
the lexicons (https://docs.bsky.app/docs/api/com-atproto-server-create-session). It records
every call, so a test can see the session it handed out being deleted again.

`FakePlc` is an honest directory: `GET /{did}` answers the documents it was given and, with
`upstream`, passes every other DID to a real PLC (the local PDS's), as plc.directory would.
"""
import base64
import json

import httpx

from .server import FakeServer, Reply, Request, secret


def jwt(exp) -> str:
    """A JWT-shaped token (Hayon reads only `exp`) whose signature part is a sentinel secret."""
    def enc(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{enc({'alg': 'ES256K'})}.{enc({'exp': exp, 'sub': 'did:plc:whoever'})}.{secret('jwt')}"


def did_document(did: str, *, handle: str, pds: str) -> dict:
    """A DID document as the PLC directory serves it (https://web.plc.directory/spec/v0.1/did-plc)."""
    return {
        "@context": ["https://www.w3.org/ns/did/v1"],
        "id": did,
        "alsoKnownAs": [f"at://{handle}"],
        "verificationMethod": [],
        "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": pds}],
    }


class HostilePds(FakeServer):
    name = "Hostile PDS"

    def __init__(self, *, did: str, handle: str, refresh_exp=4102444800):
        super().__init__()
        self.did, self.handle, self.refresh_exp = did, handle, refresh_exp
        self.session_headers: dict = {}  # extra headers on the createSession reply
        self.session_extra: dict = {}  # fields merged into the createSession reply
        self.profile: Reply | None = None  # getProfile; None: a bare PDS (400 "No service configured")
        self.record: dict | None = None  # the app.bsky.actor.profile record's value
        self.issued: list[str] = []  # refresh JWTs handed out

    def route(self, request: Request) -> Reply:
        method = request.path.removeprefix("/xrpc/")
        if method == "com.atproto.server.createSession":
            refresh = jwt(self.refresh_exp)
            self.issued.append(refresh)
            body = {"accessJwt": jwt(4102444800), "refreshJwt": refresh, "handle": self.handle, "did": self.did,
                    "didDoc": did_document(self.did, handle=self.handle, pds=self.url), "active": True,
                    **self.session_extra}
            return Reply(body=body, headers=self.session_headers)
        if method == "com.atproto.server.getSession":
            return Reply(body={"handle": self.handle, "did": self.did, "active": True})
        if method == "app.bsky.actor.getProfile":
            return self.profile or Reply(400, {"error": "InvalidRequest", "message": f"No service configured for {method}"})
        if method == "com.atproto.repo.getRecord":
            if self.record is None:
                return Reply(400, {"error": "RecordNotFound", "message": "Could not locate record"})
            return Reply(body={"uri": f"at://{self.did}/app.bsky.actor.profile/self", "cid": "bafyreib", "value": self.record})
        if method == "com.atproto.repo.describeRepo":
            return Reply(body={"handle": self.handle, "did": self.did, "didDoc": {}, "collections": [],
                               "handleIsCorrect": False})
        if method == "com.atproto.server.deleteSession":
            return Reply(body={})
        return Reply(501, {"error": "MethodNotImplemented", "message": "Method Not Implemented"})

    def deleted(self) -> list[str]:
        """The refresh JWTs presented to deleteSession."""
        return [{k.lower(): v for k, v in c.headers.items()}.get("authorization", "").removeprefix("Bearer ")
                for c in self.calls if c.path.endswith("com.atproto.server.deleteSession")]


class FakePlc(FakeServer):
    name = "PLC directory"

    def __init__(self, *, upstream: str = ""):
        super().__init__()
        self.documents: dict[str, object] = {}  # did -> document (or raw bytes, to misbehave)
        self.upstream = upstream

    def route(self, request: Request) -> Reply:
        did = request.path.lstrip("/")
        if did in self.documents:
            return Reply(body=self.documents[did])  # bytes are sent as they are
        if self.upstream:
            reply = httpx.get(f"{self.upstream}/{did}", timeout=10)
            return Reply(reply.status_code, reply.content, reply.headers.get("content-type", "application/json"))
        return Reply(404, {"message": f"DID not registered: {did}"})
