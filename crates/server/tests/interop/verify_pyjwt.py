"""Verifies an AgentSigna passport with PyJWT, as any business system in Python would.

Usage: verify_pyjwt.py JWKS_FILE PASSPORT AUDIENCE
Prints the verified claims as JSON; exits non-zero when verification fails.
"""
import json
import sys

import jwt

jwks_path, token, audience = sys.argv[1], sys.argv[2], sys.argv[3]
with open(jwks_path) as f:
    jwks = jwt.PyJWKSet.from_dict(json.load(f))

header = jwt.get_unverified_header(token)
assert header["typ"] == "passport+jwt", header
key = next(k for k in jwks.keys if k.key_id == header["kid"])
claims = jwt.decode(
    token,
    key=key,
    algorithms=["EdDSA"],
    audience=audience,
    issuer="agentsigna",
    options={"require": ["exp", "nbf", "iat", "aud", "iss", "sub", "jti"]},
    leeway=30,
)
print(json.dumps(claims))
