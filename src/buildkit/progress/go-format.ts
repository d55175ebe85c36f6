/**
 * Number formatting that matches the Go code buildx prints with, so our plain
 * output is byte-for-byte comparable. Written by hand: no installed library
 * reproduces Go's rounding or github.com/tonistiigi/units.
 */

/**
 * Go's %.Nf: like toFixed, but an exact tie (e.g. 0.25 -> "0.2") rounds to
 * even where JavaScript rounds away from zero.
 */
export function toFixedGo(x: number, digits: number): string {
  const rounded = x.toFixed(digits);
  // toFixed(100) is the exact decimal value of any double we format here.
  const exact = Math.abs(x).toFixed(Math.min(100, digits + 80));
  const dot = exact.indexOf(".");
  const tail = exact.slice(dot + 1 + digits);
  if (!/^50*$/.test(tail)) return rounded;
  const kept = exact.slice(0, dot + 1 + digits).replace(/\.$/, "");
  const lastDigit = Number(kept[kept.length - 1]);
  if (lastDigit % 2 === 1) return rounded;
  return (x < 0 ? "-" : "") + kept;
}

const DECIMAL_UNITS = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];

/** units.Bytes formatted with "%.2f": "212B", "1.23kB", "2.10MB" (decimal units). */
export function formatBytes(n: number): string {
  if (n < 1000) return `${n}B`;
  let base = 1;
  let i = 0;
  while (n >= base * 1000 && i < DECIMAL_UNITS.length - 1) {
    base *= 1000;
    i++;
  }
  return `${toFixedGo(n / base, 2)}${DECIMAL_UNITS[i]}`;
}
