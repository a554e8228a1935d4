/**
 * An SVG picture of a recipe: the schedule over the run, and the multiplier
 * of each layer group (MobileNetV2 blocks, stem, top, head layers).
 *
 * @module
 */
import type { RateRow } from "./explain.ts";
import type { Schedule } from "./schedule.ts";

/** Inputs of {@linkcode recipeSvg}. */
export interface RecipeSvgOptions {
  schedule: Schedule;
  stepsPerEpoch: number;
  totalSteps: number;
  rows: readonly RateRow[];
  title: string;
}

/** One bar of the multiplier panel. */
export interface LayerGroup {
  label: string;
  /** Smallest and largest multiplier in the group (equal when uniform). */
  min: number;
  max: number;
  frozen: boolean;
}

const WIDTH = 760;
const PANEL_HEIGHT = 220;
const MARGIN = { left: 70, right: 50, top: 40, bottom: 40 };

/** The layer group of a variable name (MobileNetV2 blocks, else the layer). */
export function layerGroupOf(name: string): string {
  const block = /^block_([0-9]+)_/.exec(name);
  if (block !== null) return `block ${block[1]}`;
  if (name.startsWith("expanded_conv_")) return "block 0";
  if (/^(Conv1|bn_Conv1)\//.test(name)) return "stem";
  if (/^(Conv_1|Conv_1_bn)\//.test(name)) return "top";
  return name.split("/")[0] ?? name;
}

/** Multipliers grouped by layer group, in order of first appearance. */
export function layerGroups(rows: readonly RateRow[]): LayerGroup[] {
  const groups = new Map<string, LayerGroup>();
  for (const row of rows) {
    const label = layerGroupOf(row.name);
    const value = row.frozen ? 0 : row.multiplier;
    const group = groups.get(label);
    if (group === undefined) {
      groups.set(label, { label, min: value, max: value, frozen: row.frozen });
    } else {
      group.min = Math.min(group.min, value);
      group.max = Math.max(group.max, value);
      group.frozen &&= row.frozen;
    }
  }
  return [...groups.values()];
}

/** Renders the two panels as a standalone SVG document. */
export function recipeSvg(options: RecipeSvgOptions): string {
  const { title } = options;
  const height = 2 * PANEL_HEIGHT + 80;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" ` +
    `height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${WIDTH / 2}" y="18" text-anchor="middle" font-size="14">` +
    `${escape(title)}</text>`,
    schedulePanel(options, 20),
    multiplierPanel(layerGroups(options.rows), PANEL_HEIGHT + 40),
    `</svg>`,
    "",
  ].join("\n");
}

function schedulePanel(options: RecipeSvgOptions, top: number): string {
  const { schedule, stepsPerEpoch, totalSteps } = options;
  const lastStep = Math.max(1, totalSteps - 1);
  const samples = Math.min(lastStep, 1500);
  const points: Array<[number, number]> = [];
  for (let i = 0; i <= samples; i++) {
    const step = Math.round(i * lastStep / samples);
    points.push([step, schedule.at(step)]);
  }
  const maxRate = Math.max(...points.map(([, r]) => r)) || 1;

  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = PANEL_HEIGHT - MARGIN.top - MARGIN.bottom;
  const x = (step: number) => MARGIN.left + step / lastStep * plotWidth;
  const y = (rate: number) =>
    top + MARGIN.top + plotHeight * (1 - rate / maxRate);
  const path = points
    .map(([s, r], i) => `${i === 0 ? "M" : "L"}${fmt(x(s))},${fmt(y(r))}`)
    .join(" ");

  const ticks: string[] = [];
  const epochs = Math.ceil(totalSteps / stepsPerEpoch);
  const every = Math.max(1, Math.ceil(epochs / 15));
  for (let e = 0; e <= epochs; e += every) {
    const px = fmt(x(Math.min(e * stepsPerEpoch, lastStep)));
    ticks.push(
      `<line x1="${px}" x2="${px}" y1="${fmt(y(0))}" y2="${
        fmt(y(0) + 4)
      }" stroke="black"/>`,
      `<text x="${px}" y="${fmt(y(0) + 16)}" text-anchor="middle">${e}</text>`,
    );
  }

  return [
    `<text x="${MARGIN.left}" y="${top + 24}">learning rate schedule ` +
    `(before multipliers) by epoch</text>`,
    axes(top, plotWidth, plotHeight),
    `<text x="${MARGIN.left - 6}" y="${fmt(y(maxRate) + 4)}" ` +
    `text-anchor="end">${maxRate.toExponential(2)}</text>`,
    `<text x="${MARGIN.left - 6}" y="${fmt(y(0) + 4)}" ` +
    `text-anchor="end">0</text>`,
    ...ticks,
    `<path d="${path}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>`,
  ].join("\n");
}

function multiplierPanel(groups: LayerGroup[], top: number): string {
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = PANEL_HEIGHT - MARGIN.top - MARGIN.bottom;
  const maxValue = Math.max(...groups.map((g) => g.max), 0) || 1;
  const slot = plotWidth / Math.max(1, groups.length);
  const base = top + MARGIN.top + plotHeight;

  const bars = groups.flatMap((group, i) => {
    const barHeight = plotHeight * group.max / maxValue;
    const lowHeight = plotHeight * group.min / maxValue;
    const left = MARGIN.left + i * slot + slot * 0.15;
    const label = group.frozen
      ? "frozen"
      : group.min === group.max
      ? String(group.max)
      : `${group.min}-${group.max}`;
    return [
      `<rect x="${fmt(left)}" y="${fmt(base - barHeight)}" ` +
      `width="${fmt(slot * 0.7)}" height="${fmt(barHeight)}" ` +
      `fill="#ff7f0e" fill-opacity="0.45"/>`,
      `<rect x="${fmt(left)}" y="${fmt(base - lowHeight)}" ` +
      `width="${fmt(slot * 0.7)}" height="${fmt(lowHeight)}" ` +
      `fill="#ff7f0e"/>`,
      `<text x="${fmt(left + slot * 0.35)}" y="${fmt(base - barHeight - 3)}" ` +
      `text-anchor="middle" font-size="8">${escape(label)}</text>`,
      `<text transform="translate(${fmt(left + slot * 0.35)},${
        fmt(base + 8)
      }) rotate(45)" font-size="8">${escape(group.label)}</text>`,
    ];
  });

  return [
    `<text x="${MARGIN.left}" y="${top + 24}">multiplier by layer group ` +
    `(light: largest, solid: smallest in the group)</text>`,
    axes(top, plotWidth, plotHeight),
    `<text x="${MARGIN.left - 6}" y="${fmt(base - plotHeight + 4)}" ` +
    `text-anchor="end">${maxValue}</text>`,
    ...bars,
  ].join("\n");
}

function axes(top: number, plotWidth: number, plotHeight: number): string {
  const x0 = MARGIN.left;
  const y0 = top + MARGIN.top + plotHeight;
  return `<path d="M${x0},${top + MARGIN.top} L${x0},${y0} L${
    x0 + plotWidth
  },${y0}" fill="none" stroke="black"/>`;
}

function fmt(value: number): string {
  return value.toFixed(1);
}

function escape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(
    />/g,
    "&gt;",
  );
}
