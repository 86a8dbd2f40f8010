/* Progressive enhancement only: every page works without this file.
   - running total of a transfer's source amounts, read in the page's language
   - CPF / CNPJ masks while typing
   - open-account form shows only the fields of the chosen kind
   - forms marked js-busy: on submit the button is disabled and says it is processing
   - a pending transfer's page asks its state until the banks decide, then reloads */
(function () {
  "use strict";
  var lang = document.body.getAttribute("data-lang") || "pt-BR";
  var DEC = lang === "en" ? "." : ",", GROUP = lang === "en" ? "," : ".";

  /* Same rules as web_ui/formatting.py read_amount: only this language's separators, groups of
     three, at most two decimals. Returns cents, 0 for an empty field, or null. */
  function parseCents(text) {
    var s = (text || "").replace(/[\s\u00a0\u202f]/g, "").replace(/^R\$/i, "");
    if (!s) { return 0; }
    if (!/^[0-9.,]+$/.test(s) || !/^\d/.test(s) || !/\d$/.test(s)) { return null; }
    var parts = s.split(DEC);
    if (parts.length > 2) { return null; }
    var units = parts[0], cents = parts.length === 2 ? parts[1] : "";
    if (cents.indexOf(GROUP) >= 0 || cents.length > 2) { return null; }
    if (units.indexOf(GROUP) >= 0) {
      var g = units.split(GROUP);
      if (!/^\d{1,3}$/.test(g[0])) { return null; }
      for (var i = 1; i < g.length; i++) { if (!/^\d{3}$/.test(g[i])) { return null; } }
      units = g.join("");
    }
    while (cents.length < 2) { cents += "0"; }
    return parseInt(units || "0", 10) * 100 + parseInt(cents, 10);
  }

  function formatMoney(cents) {
    var units = String(Math.floor(cents / 100)), c = String(cents % 100);
    if (c.length < 2) { c = "0" + c; }
    units = units.replace(/\B(?=(\d{3})+(?!\d))/g, GROUP);
    return "R$ " + units + DEC + c;
  }

  function runningTotal() {
    var form = document.getElementById("transfer-form");
    var out = document.getElementById("transfer-total");
    var box = document.getElementById("running-total");
    if (!form || !out || !box) { return; }
    var inputs = form.querySelectorAll("input[data-amount]");
    function update() {
      var total = 0, bad = false;
      inputs.forEach(function (input) {
        var cents = parseCents(input.value);
        if (cents === null) { bad = true; } else { total += cents; }
      });
      out.textContent = bad ? "—" : formatMoney(total);
    }
    inputs.forEach(function (input) { input.addEventListener("input", update); });
    box.hidden = false;
    update();
  }

  function mask(input, kind) {
    input.setAttribute("maxlength", kind === "cpf" ? "14" : "18");
    input.addEventListener("input", function () {
      var d = input.value.replace(/\D/g, "").slice(0, kind === "cpf" ? 11 : 14), out = "";
      var asCnpj = kind === "cnpj" || (kind === "doc" && d.length > 11);
      for (var i = 0; i < d.length; i++) {
        if (!asCnpj) { out += (i === 3 || i === 6 ? "." : i === 9 ? "-" : "") + d[i]; }
        else { out += (i === 2 || i === 5 ? "." : i === 8 ? "/" : i === 12 ? "-" : "") + d[i]; }
      }
      input.value = out;
    });
  }

  function kindFields() {
    var form = document.getElementById("open-account-form");
    if (!form) { return; }
    var radios = form.querySelectorAll("input[name=kind]");
    var sets = form.querySelectorAll("[data-for-kinds]");
    function update() {
      var chosen = form.querySelector("input[name=kind]:checked");
      var kind = chosen ? chosen.value : "individual";
      sets.forEach(function (fs) {
        fs.hidden = fs.getAttribute("data-for-kinds").split(" ").indexOf(kind) < 0;
      });
    }
    radios.forEach(function (r) { r.addEventListener("change", update); });
    update();
  }

  function busyForms() {
    var text = document.body.getAttribute("data-processing") || "…";
    document.querySelectorAll("form.js-busy").forEach(function (form) {
      form.addEventListener("submit", function () {
        var button = form.querySelector("button[type=submit]");
        if (!button || button.disabled) { return; }
        // After the browser has taken the form's data: a disabled button is not submitted.
        window.setTimeout(function () {
          button.disabled = true;
          button.setAttribute("aria-busy", "true");
          button.textContent = text;
        }, 0);
      });
    });
  }

  function pollPending() {
    var box = document.getElementById("transfer-status");
    var url = box && box.getAttribute("data-poll-url");
    if (!url) { return; }
    var delay = 700;
    function ask() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (data && data.status && data.status !== "pending") { window.location.reload(); return; }
          delay = Math.min(delay * 1.5, 5000);
          window.setTimeout(ask, delay);
        })
        .catch(function () { delay = Math.min(delay * 2, 5000); window.setTimeout(ask, delay); });
    }
    window.setTimeout(ask, delay);
  }

  document.querySelectorAll("input[data-mask]").forEach(function (input) {
    mask(input, input.getAttribute("data-mask"));
  });
  runningTotal();
  kindFields();
  busyForms();
  pollPending();
})();
