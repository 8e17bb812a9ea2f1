// SPDX-License-Identifier: Apache-2.0
// The gridex web console: plain JavaScript, no build step. Every number comes from
// the JSON API (/api/v1/, docs/http-api.md); pages poll it every few seconds.
"use strict";

const Gridex = {
	// Micro-units to a decimal string: 2600000 -> "2.60", 2625000 -> "2.625".
	price(v) {
		if (v === null || v === undefined) return "–";
		const neg = v < 0;
		const a = Math.abs(v);
		const whole = Math.floor(a / 1e6);
		let frac = String(a % 1e6).padStart(6, "0").replace(/0+$/, "");
		if (frac.length < 2) frac = frac.padEnd(2, "0");
		return (neg ? "-" : "") + whole + "." + frac;
	},
	hour(ms) {
		return new Date(ms).toISOString().slice(0, 13).replace("T", " ") + "h";
	},
	time(ms) {
		return new Date(ms).toISOString().slice(11, 19);
	},
	async get(path) {
		const r = await fetch("/api/v1/" + path, {cache: "no-store"});
		const body = await r.json();
		if (!r.ok) throw new Error(body.error || r.statusText);
		return body;
	},
	param(name) {
		return new URLSearchParams(location.search).get(name);
	},
	el(tag, attrs, ...children) {
		const e = document.createElement(tag);
		for (const [k, v] of Object.entries(attrs || {})) {
			if (k === "class") e.className = v;
			else if (k.startsWith("data-") || k.startsWith("aria-") || k === "href" || k === "title")
				e.setAttribute(k, v);
			else e[k] = v;
		}
		for (const c of children)
			e.append(c instanceof Node ? c : document.createTextNode(String(c)));
		return e;
	},
	fail(where, err) {
		where.replaceChildren(Gridex.el("p", {class: "error"}, "Cannot load: " + err.message));
	},
	// Polls fn every ms; marks the page ready after the first success (for tests).
	poll(fn, ms) {
		const run = async () => {
			try {
				await fn();
				document.body.dataset.ready = "1";
			} catch (err) {
				Gridex.fail(document.querySelector("main"), err);
			}
		};
		run();
		setInterval(run, ms);
	},
	// An SVG chart of series: lines (points [[x, y]...]) or bars ([[x, low, high]...]),
	// scaled to the data; opts.x and opts.y format the axis labels, opts.zero starts y at 0.
	chart(svg, series, opts) {
		const W = 600, H = 240, padX = 56, padY = 24;
		const xs = [], ys = opts.zero ? [0] : [];
		for (const s of series) {
			for (const [x, y] of s.points || []) { xs.push(x); ys.push(y); }
			for (const [x, lo, hi] of s.bars || []) { xs.push(x); ys.push(lo, hi); }
		}
		svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
		svg.replaceChildren();
		if (xs.length === 0) return;
		const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
		const sx = (x) => padX + (x1 === x0 ? (W - 2 * padX) / 2 : ((x - x0) / (x1 - x0)) * (W - 2 * padX));
		const sy = (y) => H - padY - (y1 === y0 ? (H - 2 * padY) / 2 : ((y - y0) / (y1 - y0)) * (H - 2 * padY));
		const NS = "http://www.w3.org/2000/svg";
		const add = (tag, attrs, text) => {
			const e = document.createElementNS(NS, tag);
			for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
			if (text !== undefined) e.textContent = text;
			svg.append(e);
		};
		add("line", {x1: padX, x2: padX, y1: padY, y2: H - padY, stroke: "#bbb"});
		add("line", {x1: padX, x2: W - padX, y1: H - padY, y2: H - padY, stroke: "#bbb"});
		for (const s of series) {
			for (const [x, lo, hi] of s.bars || [])
				add("line", {x1: sx(x), x2: sx(x), y1: sy(lo), y2: sy(hi), stroke: s.color,
					"stroke-width": 4});
			if (s.points && s.points.length > 0) {
				add("polyline", {points: s.points.map(([x, y]) => `${sx(x)},${sy(y)}`).join(" "),
					fill: "none", stroke: s.color, "stroke-width": 2,
					...(s.dash ? {"stroke-dasharray": "6 3"} : {})});
				for (const [x, y] of s.points.length === 1 ? s.points : [])
					add("circle", {cx: sx(x), cy: sy(y), r: 3, fill: s.color});
			}
		}
		const t = (text, x, y, anchor) => add("text", {x, y, "font-size": 11, "text-anchor": anchor}, text);
		t(opts.y(y1), padX - 4, padY + 4, "end");
		t(opts.y(y0), padX - 4, H - padY, "end");
		t(opts.x(x0), padX, H - 6, "start");
		if (x1 !== x0) t(opts.x(x1), W - padX, H - 6, "end");
	},
};
