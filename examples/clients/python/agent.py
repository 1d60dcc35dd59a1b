#!/usr/bin/env python3
"""A minimal AgentSigna agent in Python (requests + PyJWT): request -> wait -> passport ->
outcome.

    AGENTSIGNA_URL=http://127.0.0.1:8080 AGENTSIGNA_API_KEY=... AGENTSIGNA_SYSTEM_TOKEN=... \
        python agent.py [COUNTERPARTY] [AMOUNT]

1. asks for authority to create a purchase order (POST /v1/requests);
2. while a review is pending, waits on its case (GET /v1/cases/{id}?wait=25);
3. picks the passport up and verifies it offline against the server's JWK set (EdDSA,
   audience "erp"), as the ERP would;
4. as the ERP (AGENTSIGNA_SYSTEM_TOKEN: the target system's token; in a real deployment
   the ERP does this itself), reports the execution and the outcome.

Prints one JSON line with what happened; exits 0 when the purchase order was executed,
3 when the request was rejected or its review was not approved.
"""

import json
import os
import sys
import uuid

import jwt
import requests

AUDIENCE = "erp"


def main() -> int:
    base = os.environ["AGENTSIGNA_URL"].rstrip("/")
    agent = {"Authorization": "Bearer " + os.environ["AGENTSIGNA_API_KEY"]}
    erp = {"Authorization": "Bearer " + os.environ["AGENTSIGNA_SYSTEM_TOKEN"]}
    counterparty = sys.argv[1] if len(sys.argv) > 1 else "acme"
    value = sys.argv[2] if len(sys.argv) > 2 else "480.00"
    http = requests.Session()

    # 1. The request and its verdict.
    r = http.post(
        f"{base}/v1/requests",
        headers=agent,
        json={
            "action": "purchase_order.create",
            "counterparty": counterparty,
            "amount": {"value": value, "currency": "USD"},
            "audience": AUDIENCE,
            "description": "Python client example",
            "idempotency_key": f"py-{uuid.uuid4()}",
        },
        timeout=30,
    )
    r.raise_for_status()
    verdict = r.json()
    case_id = verdict["case_id"]
    print(f"verdict {verdict['verdict']} for case {case_id}", file=sys.stderr)

    # 2. Wait while a review is pending (each call returns at a change or after 25 s).
    case = verdict
    while case["status"] == "pending_review":
        r = http.get(f"{base}/v1/cases/{case_id}", params={"wait": 25}, headers=agent, timeout=60)
        r.raise_for_status()
        case = r.json()
    if case["status"] != "authorized":
        print(json.dumps({"case_id": case_id, "verdict": verdict["verdict"], "status": case["status"]}))
        return 3

    # 3. The passport, verified offline with the public keys.
    passport = case["passport"]
    jwks = jwt.PyJWKSet.from_dict(http.get(f"{base}/.well-known/jwks.json", timeout=30).json())
    kid = jwt.get_unverified_header(passport)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    claims = jwt.decode(passport, key=key.key, algorithms=["EdDSA"], audience=AUDIENCE)
    assert claims["case"]["id"] == case_id, "the passport is for another case"

    # 4. The ERP executes the order and reports; the outcome closes the case.
    r = http.post(
        f"{base}/v1/cases/{case_id}/execution",
        headers=erp,
        json={"passport_id": claims["jti"], "reference": "PO-PY-1"},
        timeout=30,
    )
    r.raise_for_status()
    r = http.post(
        f"{base}/v1/cases/{case_id}/outcome",
        headers=erp,
        json={"outcome": "completed", "detail": "delivered"},
        timeout=30,
    )
    r.raise_for_status()
    final = http.get(f"{base}/v1/cases/{case_id}", headers=agent, timeout=30).json()
    print(
        json.dumps(
            {
                "case_id": case_id,
                "verdict": verdict["verdict"],
                "passport_id": claims["jti"],
                "status": final["status"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
