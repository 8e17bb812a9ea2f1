// SPDX-License-Identifier: Apache-2.0
// The price of a GPU-hour of one accelerator class over time: every delivery hour's
// trades together, as candles (high-low bars) and their volume-weighted average price.
// From the ledger (/history: every trade settled, the last 100 intervals) where gridexd
// serves it, else from the trades it keeps (/candles: the last 200 intervals with
// trades among them).
"use strict";

const accelerator = Gridex.param("accelerator") || "";
const select = document.getElementById("interval");
if (Gridex.param("interval_ms")) select.value = Gridex.param("interval_ms");
document.getElementById("title").textContent = accelerator + " — price per GPU-hour";
document.title = "gridex — " + accelerator;

let ledgerOff = false; // /history answered 404: off in this gridexd, not asked again

async function candlesOf(interval) {
	const q = "accelerator=" + encodeURIComponent(accelerator) + "&interval_ms=" + encodeURIComponent(interval);
	let why = "";
	if (!ledgerOff) {
		const r = await fetch("/api/v1/history?" + q, {cache: "no-store"});
		const body = await r.json().catch(() => ({})); // a 500 without a body, say
		if (r.ok) return {candles: body.candles, source: "ledger", note: "Every trade settled into the ledger, the last 100 intervals."};
		if (r.status === 404) ledgerOff = true;
		else why = " (the ledger's history did not answer: " + (body.error || r.statusText) + ")";
	}
	const {candles} = await Gridex.get("candles?limit=200&" + q);
	return {candles, source: "kept", note: "The trades the server keeps: the last 200 intervals with trades among them." + why};
}

async function render() {
	const {candles, source, note} = await candlesOf(select.value);
	const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
	svg.setAttribute("class", "chart");
	svg.setAttribute("role", "img");
	svg.setAttribute("aria-label", "Price history: high-low bars and the VWAP line");
	Gridex.chart(svg, [{bars: candles.map((c) => [c.start_ms, c.low, c.high]), color: "#9aa3ad"},
		{points: candles.map((c) => [c.start_ms, c.vwap]), color: "#1f4e99"}],
		{x: (ms) => new Date(ms).toISOString().slice(5, 16).replace("T", " "), y: Gridex.price});
	const t = Gridex.el("table", {"aria-label": "Candles", "data-table": "candles"},
		Gridex.el("thead", {}, Gridex.el("tr", {},
			...["Start (UTC)", "Open", "High", "Low", "Close", "VWAP", "GPUs"].map((h) =>
				Gridex.el("th", {scope: "col"}, h)))));
	const b = Gridex.el("tbody");
	for (const c of candles)
		b.append(Gridex.el("tr", {"data-start": c.start_ms},
			Gridex.el("td", {}, new Date(c.start_ms).toISOString().slice(0, 16).replace("T", " ")),
			...[c.open, c.high, c.low, c.close, c.vwap].map((v) => Gridex.el("td", {}, Gridex.price(v))),
			Gridex.el("td", {}, c.volume)));
	if (candles.length === 0) b.append(Gridex.el("tr", {}, Gridex.el("td", {colSpan: 7}, "no trades yet")));
	t.append(b);
	document.querySelector("main").replaceChildren(Gridex.el("p", {class: "muted", "data-source": source}, note),
		svg, Gridex.el("div", {class: "scroll"}, t));
}

select.addEventListener("change", () => {
	history.replaceState(null, "", "?accelerator=" + encodeURIComponent(accelerator) +
		"&interval_ms=" + select.value);
	render();
});
Gridex.poll(render, 5000);
