// Parse an .ics file with ical.js (the parser Thunderbird uses) and print what it read as JSON.
// Usage: node parse.mjs FILE
import { readFileSync } from "node:fs";
import ICAL from "ical.js";

const text = readFileSync(process.argv[2], "utf8");
const calendar = new ICAL.Component(ICAL.parse(text));
const zones = calendar.getAllSubcomponents("vtimezone").map((vtz) => {
  const zone = new ICAL.Timezone(vtz);
  ICAL.TimezoneService.register(zone);
  return zone.tzid;
});
const events = calendar.getAllSubcomponents("vevent").map((vevent) => {
  const event = new ICAL.Event(vevent);
  return {
    uid: event.uid,
    summary: event.summary,
    start: event.startDate.toJSDate().toISOString(),
    end: event.endDate.toJSDate().toISOString(),
    all_day: event.startDate.isDate,
    tzid: event.startDate.isDate ? null : event.startDate.zone.tzid,
    status: vevent.getFirstPropertyValue("status"),
    sequence: event.sequence,
  };
});
console.log(JSON.stringify({
  name: calendar.getFirstPropertyValue("x-wr-calname"),
  timezones: zones,
  events,
}));
