/* Progressive enhancement only: every page works without this file.
   - running total of a transfer's source amounts
   - CPF / CNPJ masks while typing
   - open-account form shows only the fields of the chosen kind
   - a pending transfer's page asks its state until the banks decide, then reloads */
(function () {
  "use strict";
  var lang = document.body.getAttribute("data-lang") || "pt-BR";

  function grouped(text, sep) {
    var re = new RegExp("^\\d{1,3}(?:" + (sep === "." ? "\\." : ",") + "\\d{3})+$");
    return re.test(text);
  }

  /* Same rules as web_ui/formatting.py normalize_amount; returns cents or null. */
  function parseCents(text) {
    var s = (text || "").replace(/[\s\u00a0]/g, "").replace(/^R\$/, "");
    if (!s) { return 0; }
    if (!/^[0-9.,]+$/.test(s) || !/^\d/.test(s) || !/\d$/.test(s)) { return null; }
    var units, cents = "";
    var c = s.indexOf(",") >= 0, d = s.indexOf(".") >= 0;
    if (c && d) {
      var dec = s.lastIndexOf(",") > s.lastIndexOf(".") ? "," : ".";
      var th = dec === "," ? "." : ",";
      var i = s.lastIndexOf(dec);
      units = s.slice(0, i); cents = s.slice(i + 1);
      if (cents.length > 2 || !(grouped(units, th) || /^\d+$/.test(units))) { return null; }
      units = units.split(th).join("");
    } else if (c || d) {
      var sep = c ? "," : ".";
      var j = s.lastIndexOf(sep);
      var tail = s.slice(j + 1);
      if (s.split(sep).length === 2 && tail.length <= 2) { units = s.slice(0, j); cents = tail; }
      else if (grouped(s, sep)) { units = s.split(sep).join(""); }
      else { return null; }
    } else { units = s; }
    while (cents.length < 2) { cents += "0"; }
    return parseInt(units || "0", 10) * 100 + parseInt(cents, 10);
  }

  function formatMoney(cents) {
    var th = lang === "en" ? "," : ".", dec = lang === "en" ? "." : ",";
    var units = String(Math.floor(cents / 100)), c = String(cents % 100);
    if (c.length < 2) { c = "0" + c; }
    units = units.replace(/\B(?=(\d{3})+(?!\d))/g, th);
    return "R$ " + units + dec + c;
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
    var size = kind === "cnpj" ? 14 : 11;
    input.setAttribute("maxlength", kind === "cnpj" ? "18" : "14");
    input.addEventListener("input", function () {
      var d = input.value.replace(/\D/g, "").slice(0, size), out = "";
      for (var i = 0; i < d.length; i++) {
        if (kind === "cpf") { out += (i === 3 || i === 6 ? "." : i === 9 ? "-" : "") + d[i]; }
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
  pollPending();
})();
