// Polls the relay's counters and the demo's per-service token state every 2 seconds.
(function () {
  "use strict";
  var statsUrl = document.currentScript.dataset.stats;

  function row(cells) {
    var tr = document.createElement("tr");
    cells.forEach(function (value) {
      var td = document.createElement("td");
      td.textContent = value === null || value === undefined ? "—" : String(value);
      tr.appendChild(td);
    });
    return tr;
  }

  function fill(id, rows, columns, empty) {
    var body = document.getElementById(id);
    if (!rows.length) {
      var tr = row([empty]);
      tr.firstChild.colSpan = columns;
      tr.firstChild.className = "muted";
      body.replaceChildren(tr);
      return;
    }
    body.replaceChildren.apply(body, rows);
  }

  function seconds(value) {
    return value === null ? null : value + " s";
  }

  // The flow, then any further labels of the counter (grant, outcome).
  function counterFlow(counter) {
    var extra = Object.keys(counter).filter(function (key) {
      return ["name", "target", "flow", "value"].indexOf(key) < 0;
    }).map(function (key) { return key + "=" + counter[key]; });
    return [counter.flow].concat(extra).filter(Boolean).join(" ");
  }

  function get(url) {
    return fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (response) {
        if (!response.ok) { throw new Error(url + ": HTTP " + response.status); }
        return response.json();
      });
  }

  function poll() {
    Promise.all([get("/demo/status"), get(statsUrl)])
      .then(function (results) {
        var status = results[0];
        var stats = results[1];
        fill("status-services", status.services.map(function (s) {
          return row([s.service, s.flow, s.cached ? "yes" : "no", seconds(s.expires_in),
                      seconds(s.next_refresh_in)]);
        }), 5, "Sign in to see your tokens.");
        fill("status-providers", status.providers.map(function (p) {
          return row([p.provider, p.token_calls.authorization_code, p.token_calls.refresh_token,
                      p.token_calls.token_exchange]);
        }), 4, "No providers.");
        fill("status-counters", stats.counters.map(function (c) {
          return row([c.name, c.target, counterFlow(c), c.value]);
        }), 4, "No counters recorded yet.");
        document.getElementById("status-updated").textContent =
          "updated " + new Date().toLocaleTimeString();
        document.getElementById("status-panel").dataset.ready = "true";
      })
      .catch(function (error) {
        document.getElementById("status-updated").textContent = "(" + error.message + ")";
      });
  }

  poll();
  setInterval(poll, 2000);
})();
