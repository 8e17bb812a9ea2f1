// SPDX-License-Identifier: Apache-2.0
// Market overview: a grid of accelerator classes (rows) by delivery hour (columns).
"use strict";

Gridex.poll(async () => {
	const {products, time_ms} = await Gridex.get("products");
	const hours = [...new Set(products.filter((p) => p.delivery_start_ms !== null)
		.map((p) => p.delivery_start_ms))].sort((a, b) => a - b);
	const classes = [...new Set(products.map((p) => p.accelerator))].sort();
	const main = document.querySelector("main");
	if (products.length === 0) {
		main.replaceChildren(Gridex.el("p", {}, "No products yet: nothing has been traded or offered."));
		return;
	}
	const head = Gridex.el("tr", {}, Gridex.el("th", {class: "row", scope: "col"}, "Accelerator"));
	for (const h of hours) head.append(Gridex.el("th", {scope: "col"}, Gridex.hour(h)));
	const table = Gridex.el("table", {"aria-label": "Market overview"}, Gridex.el("thead", {}, head));
	const body = Gridex.el("tbody");
	for (const c of classes) {
		const mine = products.filter((p) => p.accelerator === c);
		const lasts = mine.filter((p) => p.last_price !== null).map((p) => p.last_price);
		const lo = Math.min(...lasts), hi = Math.max(...lasts);
		const row = Gridex.el("tr", {}, Gridex.el("th", {class: "row", scope: "row"},
			Gridex.el("a", {href: "history.html?accelerator=" + encodeURIComponent(c)}, c)));
		for (const h of hours) {
			const p = mine.find((q) => q.delivery_start_ms === h);
			if (!p) { row.append(Gridex.el("td", {class: "cell"}, "")); continue; }
			// Heat: the last price's place between the class's lowest and highest (also as text).
			const cell = Gridex.el("td", {class: "cell state-" + p.state, "data-product": p.product,
				title: p.product + " (" + p.state.replace("_", " ") + ")"});
			if (p.last_price !== null && hi > lo) {
				const t = (p.last_price - lo) / (hi - lo);
				cell.style.background = `hsl(${210 - 180 * t} 70% ${93 - 10 * t}%)`;
			}
			cell.append(Gridex.el("a", {href: "product.html?product=" + encodeURIComponent(p.product)},
				Gridex.el("span", {class: "bid", "data-field": "best_bid"}, Gridex.price(p.best_bid)),
				Gridex.el("span", {class: "ask", "data-field": "best_ask"}, Gridex.price(p.best_ask)),
				Gridex.el("span", {class: "last", "data-field": "last_price"}, Gridex.price(p.last_price)),
				p.state === "open" ? "" : Gridex.el("span", {class: "muted"}, p.state.replace("_", " "))));
			row.append(cell);
		}
		body.append(row);
	}
	table.append(body);
	main.replaceChildren(Gridex.el("div", {class: "scroll"}, table),
		Gridex.el("p", {class: "muted"}, "As of " + new Date(time_ms).toISOString() +
			". Colour shades the last price from the class's lowest (blue) to highest (red)."));
}, 3000);
