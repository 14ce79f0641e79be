// Builds the sign-in list from GET /auth/connectors (the browser sends Accept-Language).
(function () {
  "use strict";
  var list = document.getElementById("connectors");

  function entry(connector) {
    var item = document.createElement("li");
    var link = document.createElement("a");
    link.className = "connector";
    link.id = "connector-" + connector.id;
    link.href = connector.login_url + "?next=%2F";
    var picture = document.createElement("picture");
    if (connector.logo_dark) {
      var dark = document.createElement("source");
      dark.media = "(prefers-color-scheme: dark)";
      dark.srcset = connector.logo_dark;
      picture.appendChild(dark);
    }
    var img = document.createElement("img");
    img.src = connector.logo || "";
    img.alt = "";
    img.width = 32;
    img.height = 32;
    picture.appendChild(img);
    var text = document.createElement("span");
    var name = document.createElement("strong");
    name.textContent = connector.name;
    var description = document.createElement("small");
    description.textContent = connector.description || "";
    text.appendChild(name);
    text.appendChild(description);
    link.appendChild(picture);
    link.appendChild(text);
    item.appendChild(link);
    return item;
  }

  fetch(list.dataset.source || "/auth/connectors", { headers: { Accept: "application/json" } })
    .then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json();
    })
    .then(function (body) {
      list.replaceChildren.apply(list, body.connectors.map(entry));
      list.dataset.ready = "true";
    })
    .catch(function (error) {
      var item = document.createElement("li");
      item.className = "error";
      item.textContent = "Could not load connectors (" + error.message + ").";
      list.replaceChildren(item);
    });
})();
