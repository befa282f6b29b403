/** Sprig's date and semver functions, as kairos' utils/luet build spec calls them. */
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { formatGoTime } from '../../src/tree/template/dates.js';
import { TemplateSet } from '../../src/tree/template/exec.js';

const render = (src: string): string => new TemplateSet().render(src, 'build.yaml', { Values: {} });

describe('sprig dates', () => {
  let saved: string | undefined;
  beforeEach(() => {
    saved = process.env.SOURCE_DATE_EPOCH;
    process.env.SOURCE_DATE_EPOCH = '1700000000'; // 2023-11-14T22:13:20Z
  });
  afterEach(() => {
    if (saved === undefined) delete process.env.SOURCE_DATE_EPOCH;
    else process.env.SOURCE_DATE_EPOCH = saved;
  });

  it.each([
    // kairos-io/packages packages/utils/luet/build.yaml:16
    ['{{ dateInZone "2006-01-02T15:04:05Z" (now) "UTC" }}', '2023-11-14T22:13:20Z'],
    [
      '{{ dateInZone "Mon Jan _2 15:04:05 MST 2006" (now) "Europe/Berlin" }}',
      'Tue Nov 14 23:13:20 CET 2023',
    ],
    [
      '{{ dateInZone "2006-01-02T15:04:05Z07:00" 0 "America/New_York" }}',
      '1969-12-31T19:00:00-05:00',
    ],
    ['{{ dateInZone "02/01/06 3:04PM .000" 1700000000 "UTC" }}', '14/11/23 10:13PM .000'],
    ['{{ dateInZone "2006-01-02" (now) "No/Such_Zone" }}', '2023-11-14'],
    ['{{ now | unixEpoch }}', '1700000000'],
    ['{{ if now }}y{{ end }}', 'y'],
  ])('%s', (src, want) => {
    expect(render(src)).toBe(want);
  });
});

describe('UTC without zone data', () => {
  it('formats every field as the zone-data path does (Etc/UTC is the same zone through Intl)', () => {
    const layout =
      'Mon Monday Jan January 1 01 _2 2 02 2006 06 15 3 03 4 04 5 05 PM pm MST -0700 -07:00 Z07:00 .000 .999999999';
    fc.assert(
      fc.property(
        fc.integer({ min: Date.UTC(1, 0, 1), max: Date.UTC(9999, 11, 31, 23, 59, 59, 999) }),
        (ms) => {
          expect(formatGoTime(ms, 'UTC', layout)).toBe(formatGoTime(ms, 'Etc/UTC', layout));
        },
      ),
      { numRuns: 500 },
    );
    for (const ms of [0, -1, 1700000000000, Date.UTC(2000, 1, 29, 23, 59, 59), Date.UTC(1, 0, 1)])
      expect(formatGoTime(ms, 'UTC', layout)).toBe(formatGoTime(ms, 'Etc/UTC', layout));
  });
});

describe('sprig semver', () => {
  it.each([
    ['{{ (semver "1.2.3-beta.1+b5").Major }}.{{ (semver "v1.2").Minor }}', '1.2'],
    ['{{ semver "v1.2" }}', '1.2.0'],
    ['{{ (semver "1.2.3-beta.1+b5").Prerelease }}', 'beta.1'],
    ['{{ semverCompare ">=1.2.0" "1.10.0" }}', 'true'],
    ['{{ semverCompare "^1.2" "2.0.0" }}', 'false'],
    ['{{ semverCompare "~1.2.0" "1.2.9" }}', 'true'],
    ['{{ semverCompare "<1.0 || >=2.0" "2.1.0" }}', 'true'],
    ['{{ semverCompare ">=1.0.0" "1.0.0-rc1" }}', 'false'],
  ])('%s', (src, want) => {
    expect(render(src)).toBe(want);
  });

  it('fails on a version that is not semver, naming it', () => {
    expect(() => render('{{ semver "rpi-6.6.y-1" }}')).toThrow(
      /Invalid Semantic Version "rpi-6\.6\.y-1"/,
    );
  });
});
