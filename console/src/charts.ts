// A function's charts (uPlot, bundled): requests and errors, then p50/p95 latency, per version, over the
// last hour or day, with its releases marked on the time axis. Data: /stats, from the durable log.

import uPlot from "uplot";
import { api, type GatewaySettings, gw, pathOf, type Stats, type VersionSeries } from "./api";
import { clear, h } from "./util";

const COLORS = ["#2563eb", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be123c"];

function releaseMarks(releases: Stats["releases"]): uPlot.Plugin {
  return {
    hooks: {
      draw: (u: uPlot) => {
        const { ctx, bbox } = u;
        ctx.save();
        ctx.strokeStyle = "#dc2626";
        ctx.fillStyle = "#dc2626";
        ctx.setLineDash([4, 4]);
        ctx.font = `${Math.round(11 * devicePixelRatio)}px sans-serif`;
        for (const r of releases) {
          const x = Math.round(u.valToPos(r.time, "x", true));
          if (x < bbox.left || x > bbox.left + bbox.width) continue;
          ctx.beginPath();
          ctx.moveTo(x, bbox.top);
          ctx.lineTo(x, bbox.top + bbox.height);
          ctx.stroke();
          ctx.fillText(`v${r.version} ${r.semver}`, x + 4, bbox.top + 12 * devicePixelRatio);
        }
        ctx.restore();
      },
    },
  };
}

function chart(title: string, stats: Stats, pick: (s: VersionSeries) => { label: string; values: (number | null)[]; dash?: number[] }[], width: number): HTMLElement {
  const box = h("figure", { class: "chart", "data-chart": title });
  const series: uPlot.Series[] = [{}];
  const data: uPlot.AlignedData = [stats.times];
  Object.entries(stats.versions).forEach(([version, s], i) => {
    for (const line of pick(s)) {
      series.push({ label: `v${version} ${line.label}`, stroke: COLORS[i % COLORS.length], dash: line.dash, spanGaps: false });
      (data as (number | null)[][]).push(line.values);
    }
  });
  new uPlot({ title, width, height: 180, series, plugins: [releaseMarks(stats.releases)], scales: { x: { time: true } } }, data, box);
  return box;
}

export async function renderCharts(into: HTMLElement, gateway: GatewaySettings, env: string, base: string, window: "hour" | "day"): Promise<void> {
  clear(into, h("p", { class: "muted" }, "Loading the charts…"));
  let stats: Stats;
  try {
    stats = await api.get<Stats>(`${gw(gateway.id)}/stats/${env}/${pathOf(base)}?window=${window}`);
  } catch (err) {
    clear(into, h("p", { class: "muted" }, (err as Error).message));
    return;
  }
  if (!Object.keys(stats.versions).length) {
    clear(into, h("p", { class: "empty" }, `No invocations of ${env}/${base} in the last ${window}.`));
    return;
  }
  const width = Math.max(320, into.clientWidth || 640);
  clear(
    into,
    chart("Requests and errors", stats, (s) => [{ label: "requests", values: s.requests }, { label: "errors", values: s.errors, dash: [6, 3] }], width),
    chart("Latency (ms)", stats, (s) => [{ label: "p50", values: s.p50_ms }, { label: "p95", values: s.p95_ms, dash: [6, 3] }], width),
  );
}
