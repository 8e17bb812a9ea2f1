// SPDX-License-Identifier: Apache-2.0
// One product: its depth (table and cumulative chart) and its trade tape, polled.
"use strict";

const product = Gridex.param("product") || "";
document.getElementById("title").textContent = product;
document.title = "gridex — " + product;
document.getElementById("history").href =
	"history.html?accelerator=" + encodeURIComponent(product.split("/")[0]);

function levels(rows, side) {
	const t = Gridex.el("table", {"aria-label": side === "bid" ? "Bids" : "Asks", "data-side": side},
		Gridex.el("thead", {}, Gridex.el("tr", {},
			Gridex.el("th", {scope: "col"}, side === "bid" ? "Bid" : "Ask"),
			Gridex.el("th", {scope: "col"}, "GPUs"), Gridex.el("th", {scope: "col"}, "Orders"),
			Gridex.el("th", {scope: "col"}, "Total GPUs"))));
	const b = Gridex.el("tbody");
	let total = 0;
	for (const l of rows) {
		total += l.quantity;
		b.append(Gridex.el("tr", {"data-price": l.price},
			Gridex.el("td", {class: side}, Gridex.price(l.price)), Gridex.el("td", {}, l.quantity),
			Gridex.el("td", {}, l.orders), Gridex.el("td", {}, total)));
	}
	if (rows.length === 0) b.append(Gridex.el("tr", {}, Gridex.el("td", {colSpan: 4}, "none")));
	t.append(b);
	return t;
}

Gridex.poll(async () => {
	const book = await Gridex.get("book?depth=20&product=" + encodeURIComponent(product));
	const {trades} = await Gridex.get("trades?limit=50&product=" + encodeURIComponent(product));
	// Depth chart: cumulative GPUs by price as steps from the best price outwards.
	const steps = (levels) => {
		let cum = 0;
		const pts = [];
		for (const l of levels) {
			pts.push([l.price, cum]);
			cum += l.quantity;
			pts.push([l.price, cum]);
		}
		return pts;
	};
	const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
	svg.setAttribute("class", "chart");
	svg.setAttribute("role", "img");
	svg.setAttribute("aria-label", "Depth: cumulative GPUs by price; bids solid, asks dashed");
	Gridex.chart(svg, [{points: steps(book.bids), color: "#0b6e4f"},
		{points: steps(book.asks), color: "#a4262c", dash: true}],
		{x: Gridex.price, y: (v) => v + " GPUs", zero: true});
	const tape = Gridex.el("table", {"aria-label": "Trades", "data-table": "trades"},
		Gridex.el("thead", {}, Gridex.el("tr", {}, Gridex.el("th", {scope: "col"}, "Time (UTC)"),
			Gridex.el("th", {scope: "col"}, "Price"), Gridex.el("th", {scope: "col"}, "GPUs"),
			Gridex.el("th", {scope: "col"}, "Aggressor"))));
	const tb = Gridex.el("tbody");
	for (const t of trades)
		tb.append(Gridex.el("tr", {"data-sequence": t.sequence}, Gridex.el("td", {}, Gridex.time(t.time_ms)),
			Gridex.el("td", {class: t.aggressor === "buy" ? "bid" : "ask"}, Gridex.price(t.price)),
			Gridex.el("td", {}, t.quantity), Gridex.el("td", {}, t.aggressor)));
	if (trades.length === 0) tb.append(Gridex.el("tr", {}, Gridex.el("td", {colSpan: 4}, "no trades yet")));
	tape.append(tb);
	document.querySelector("main").replaceChildren(
		Gridex.el("h2", {}, "Depth"),
		Gridex.el("p", {class: "muted"}, "Cumulative GPUs by price: bids solid, asks dashed."),
		svg,
		Gridex.el("div", {class: "grid2"}, Gridex.el("div", {class: "scroll"}, levels(book.bids, "bid")),
			Gridex.el("div", {class: "scroll"}, levels(book.asks, "ask"))),
		Gridex.el("h2", {}, "Trades"), Gridex.el("div", {class: "scroll"}, tape));
}, 2000);
