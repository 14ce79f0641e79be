// A sample app in another language: it asks the authrelay sidecar for the header to call
// the "orders" service on behalf of its caller, then calls the service with it.
"use strict";
const http = require("node:http");

const SIDECAR = process.env.SIDECAR_URL || "http://127.0.0.1:5000";
const PORT = Number(process.env.PORT || 8080);

async function ordersFor(authorization) {
  const answer = await fetch(`${SIDECAR}/AuthorizationHeader/orders`, {
    headers: { Authorization: authorization },
  });
  if (!answer.ok) {
    return { status: answer.status, problem: await answer.json() };
  }
  const { authorizationHeader } = await answer.json();
  const orders = await fetch(`${process.env.ORDERS_URL}/orders`, {
    headers: { Authorization: authorizationHeader },
  });
  return { status: orders.status, body: await orders.json() };
}

http
  .createServer(async (request, response) => {
    const authorization = request.headers.authorization;
    if (!authorization) {
      response.writeHead(401, { "content-type": "application/json" });
      response.end(JSON.stringify({ error: "sign in first" }));
      return;
    }
    try {
      const result = await ordersFor(authorization);
      response.writeHead(result.status, { "content-type": "application/json" });
      response.end(JSON.stringify(result.body ?? result.problem));
    } catch (error) {
      response.writeHead(502, { "content-type": "application/json" });
      response.end(JSON.stringify({ error: "the sidecar or the service cannot be reached" }));
    }
  })
  .listen(PORT, () => console.log(`sample app on :${PORT}, sidecar at ${SIDECAR}`));
