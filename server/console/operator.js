// SPDX-License-Identifier: Apache-2.0
// Operators: live leases by state, settlement, hook calls, and the ledger's trial
// balance as gridex_auditor reads it (the operator endpoints, bearer token).
"use strict";

async function operatorGet(path, token) {
	const r = await fetch("/api/v1/operator/" + path,
		{cache: "no-store", headers: {Authorization: "Bearer " + token}});
	const body = await r.json();
	if (!r.ok) throw new Error(body.error || r.statusText);
	return body;
}

function table(label, head, rows, attrs) {
	const t = Gridex.el("table", Object.assign({"aria-label": label}, attrs || {}),
		Gridex.el("thead", {}, Gridex.el("tr", {}, ...head.map((h) => Gridex.el("th", {scope: "col"}, h)))));
	const b = Gridex.el("tbody");
	for (const r of rows) b.append(Gridex.el("tr", r.attrs || {}, ...r.cells.map((c) => Gridex.el("td", {}, c))));
	t.append(b);
	return Gridex.el("div", {class: "scroll"}, t);
}

async function show(token) {
	const st = await operatorGet("status", token);
	const main = document.querySelector("main");
	const parts = [Gridex.el("h2", {}, "Leases")];
	parts.push(st.leases_on
		? table("Live leases", ["State", "Leases"], Object.entries(st.live_leases).map(([k, v]) => ({cells: [k, v]})))
		: Gridex.el("p", {}, "Leases are off (no provisioning hook)."));
	parts.push(Gridex.el("h2", {}, "Settlement"), table("Settlement", ["Lag (ms)", "Pending", "Batches", "Retries", "Errors", "Halted"],
		[{cells: [st.settlement.lag_ms, st.settlement.pending, st.settlement.batches, st.settlement.retries, st.settlement.errors,
			st.settlement.halted ? "yes: new orders refused" : "no"]}]));
	if (st.leases_on)
		parts.push(Gridex.el("h2", {}, "Hook calls"), table("Hook calls", ["Outcome", "Calls"],
			Object.entries(st.hook_calls).map(([k, v]) => ({cells: [k, v]}))));
	let ledger;
	try {
		ledger = await operatorGet("ledger", token);
	} catch (err) {
		ledger = {error: err.message};
	}
	parts.push(Gridex.el("h2", {}, "Trial balance"));
	if (ledger.error) {
		parts.push(Gridex.el("p", {class: "error"}, "Ledger: " + ledger.error));
	} else {
		parts.push(Gridex.el("p", {class: "muted"}, "Read from the ledger as gridex_auditor at " +
			new Date(ledger.as_of_ms).toISOString() + "; " + ledger.batches.count + " batches, the last " + ledger.batches.last + "."));
		for (const [ccy, c] of Object.entries(ledger.currencies)) {
			parts.push(Gridex.el("h3", {}, ccy + (c.balanced ? " — balanced (debits equal credits)" : " — NOT BALANCED")));
			parts.push(table("Balances by kind " + ccy, ["Kind", "Accounts", "Balance"],
				Object.entries(c.kinds).map(([k, v]) => ({attrs: {"data-kind": k}, cells: [k, v.accounts, Gridex.price(v.balance)]})),
				{"data-currency": ccy}));
		}
		parts.push(Gridex.el("h3", {}, "Participants"), table("Participants", ["Id", "Name", "Currency", "Available"],
			ledger.participants.map((p) => ({attrs: {"data-participant": p.id}, cells: [p.id, p.name, p.currency, Gridex.price(p.available)]}))));
	}
	main.replaceChildren(...parts);
	document.body.dataset.ready = "1";
}

document.getElementById("login").addEventListener("submit", (e) => {
	e.preventDefault();
	const token = document.getElementById("token").value;
	sessionStorage.setItem("gridex-operator-token", token);
	show(token).catch((err) => Gridex.fail(document.querySelector("main"), err));
});
const saved = sessionStorage.getItem("gridex-operator-token");
if (saved) show(saved).catch((err) => Gridex.fail(document.querySelector("main"), err));
