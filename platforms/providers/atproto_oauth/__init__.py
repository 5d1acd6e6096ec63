"""AT Protocol OAuth (https://atproto.com/specs/oauth) for the Bluesky provider.

Hand-written on `cryptography` (ES256) rather than the `atproto-oauth` package: that package is
async-only, at 0.1.0, and makes its own HTTP clients, so its calls would bypass Hayon's SSRF guard,
deadlines and size caps (platforms/http.py). Here every call goes through `http.httpx_client()`.

- keys.py: ES256 keys, DPoP proofs, client assertions (JWTs signed here, never verified here).
- discovery.py: identifier -> DID -> DID document -> PDS -> resource -> authorization server.
- client.py: the client identity (loopback or confidential), PAR, token, refresh, revoke, and
  DPoP-bound calls, each with the `use_dpop_nonce` retry.
"""
