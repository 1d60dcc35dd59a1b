// A minimal AgentSigna agent in TypeScript (fetch + jose): request -> wait -> passport ->
// outcome. Node 20: `npm ci && npm run build`, then
//
//   AGENTSIGNA_URL=http://127.0.0.1:8080 AGENTSIGNA_API_KEY=... AGENTSIGNA_SYSTEM_TOKEN=... \
//     node dist/agent.js [COUNTERPARTY] [AMOUNT]
//
// 1. asks for authority to create a purchase order (POST /v1/requests);
// 2. while a review is pending, waits on its case (GET /v1/cases/{id}?wait=25);
// 3. picks the passport up and verifies it offline against the server's JWK set (EdDSA,
//    audience "erp"), as the ERP would;
// 4. as the ERP (AGENTSIGNA_SYSTEM_TOKEN: the target system's token; in a real deployment
//    the ERP does this itself), reports the execution and the outcome.
//
// Prints one JSON line with what happened; exits 0 when the purchase order was executed,
// 3 when the request was rejected or its review was not approved.

import { randomUUID } from "node:crypto";
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from "jose";

const AUDIENCE = "erp";

interface Case {
  case_id: string;
  status: string;
  verdict: string;
  passport?: string | null;
}

function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

async function call<T>(method: string, url: string, token: string, body?: unknown): Promise<T> {
  const resp = await fetch(url, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  if (!resp.ok) throw new Error(`${method} ${url}: HTTP ${resp.status}: ${text}`);
  return JSON.parse(text) as T;
}

async function main(): Promise<number> {
  const base = env("AGENTSIGNA_URL").replace(/\/+$/, "");
  const agent = env("AGENTSIGNA_API_KEY");
  const erp = env("AGENTSIGNA_SYSTEM_TOKEN");
  const [counterparty = "acme", value = "480.00"] = process.argv.slice(2);

  // 1. The request and its verdict.
  const verdict = await call<Case>("POST", `${base}/v1/requests`, agent, {
    action: "purchase_order.create",
    counterparty,
    amount: { value, currency: "USD" },
    audience: AUDIENCE,
    description: "TypeScript client example",
    idempotency_key: `ts-${randomUUID()}`,
  });
  const caseId = verdict.case_id;
  console.error(`verdict ${verdict.verdict} for case ${caseId}`);

  // 2. Wait while a review is pending (each call returns at a change or after 25 s).
  let current: Case = verdict;
  while (current.status === "pending_review") {
    current = await call<Case>("GET", `${base}/v1/cases/${caseId}?wait=25`, agent);
  }
  if (current.status !== "authorized" || !current.passport) {
    console.log(JSON.stringify({ case_id: caseId, verdict: verdict.verdict, status: current.status }));
    return 3;
  }

  // 3. The passport, verified offline with the public keys.
  const jwksResp = await fetch(`${base}/.well-known/jwks.json`);
  const jwks = createLocalJWKSet((await jwksResp.json()) as JSONWebKeySet);
  const { payload } = await jwtVerify(current.passport, jwks, { audience: AUDIENCE, algorithms: ["EdDSA"] });
  const passportId = String(payload.jti);
  if ((payload.case as { id?: string } | undefined)?.id !== caseId) throw new Error("the passport is for another case");

  // 4. The ERP executes the order and reports; the outcome closes the case.
  await call("POST", `${base}/v1/cases/${caseId}/execution`, erp, { passport_id: passportId, reference: "PO-TS-1" });
  await call("POST", `${base}/v1/cases/${caseId}/outcome`, erp, { outcome: "completed", detail: "delivered" });
  const final = await call<Case>("GET", `${base}/v1/cases/${caseId}`, agent);
  console.log(JSON.stringify({ case_id: caseId, verdict: verdict.verdict, passport_id: passportId, status: final.status }));
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
