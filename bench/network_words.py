"""Who and what the bench network (bench/generate.py) is: its members, and the words of Danish
NGO life, enough of them that organisations, titles, places and descriptions vary as in a real
network."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

WINDOWS_ZONE = "Romance Standard Time"

ORG_KINDS = (
    "Klimanetværket|Grøn Omstilling|Foreningen Verdenshjørnet|Sprogforeningen|Kulturhuset|"
    "Ungdomsrådet|Fair Trade|Venskabsforeningen Danmark-Tanzania|Naturfredningsforeningen|"
    "Frivilligcenter|Repair Café|Madfællesskabet|Flygtningevenner|Cykelklubben|Seniorklubben|"
    "Lokalhistorisk Forening|Beboerforeningen|Fællesskabet|Bytteringen|Børnenes Kontor|"
    "Solidaritetsgruppen|Demokrativærkstedet|Biodiversitetslauget|Energifællesskabet|Kvindenetværket"
).split("|")
PLACES = (
    "Aarhus Odense Aalborg Esbjerg Vejle Horsens Randers Kolding Herning Roskilde Næstved "
    "Silkeborg Svendborg Viborg Holstebro Nørrebro Vesterbro Amager Valby Frederiksberg Østerbro "
    "Sønderborg Hillerød Helsingør Slagelse Holbæk Fredericia Haderslev Skive Thisted Nyborg "
    "Ribe Tønder Grenaa Ebeltoft Faaborg Middelfart Køge Ringsted Hjørring"
).split()
STREETS = (
    "Nørrebrogade|Jægersborggade|Fælledvej|Vesterbrogade|Østergade|Søndergade|Algade|Kirkevej|"
    "Skolegade|Havnegade|Stationsvej|Møllevej|Rådhuspladsen|Bispegade|Kongensgade|Vestergade"
).split("|")
TOPICS = (
    "klimatilpasning|CSRD|bæredygtig mad|demokrati i Sahel|vand i Tanzania|unges trivsel|"
    "frivillighed|biodiversitet i byen|energifællesskaber|flygtninges rettigheder|"
    "cirkulær økonomi|ligestilling|kunst og aktivisme|fair handel|cykelbyen|ældres ensomhed|"
    "plastik i havet|lokaldemokrati|FN's verdensmål|affaldssortering"
).split("|")
GROUPS = "nye danskere|børnefamilier|unge|seniorer|studerende|frivillige|naboer".split("|")
FILMS = "Anthropocene|Tomorrow|Den sidste isbjørn|Kiss the Ground|Honeyland|Flugt|Sult".split("|")
BEACHES = "Amager Strand|Bellevue|Sandkaas|Den Permanente|Kalvebod|Skærbæk|Hvide Sande".split("|")
DISHES = "linsesuppe|syrisk mezze|vegansk lasagne|æbleskiver|dal og naan|grønkålssalat".split("|")
CATEGORIES = "Klima|Fællesskab|Kultur|Natur|Sprog|Demokrati|Internationalt|Børn|Mad".split("|")
TITLES = (
    "Klimacafé|Generalforsamling {year}|Sprogcafé for {group}|Foredrag om {topic}|"
    "Filmaften: {film}|Strandrydning ved {beach}|Fællesspisning: {dish}|Workshop: {topic}|"
    "Debatmøde om {topic}|Byttemarked i {place}|Repair Café|Lektiecafé|Frivilligmøde|"
    "Åbent hus hos {org}|Studiekreds om {topic}|Temadag om {topic}|Cykeltur til {place}|"
    "Loppemarked i {place}|Netværksmøde: {topic}|Koncert for {topic}|Fundraising-workshop|"
    "Klimacafé hos {org}|Bestyrelsesmøde|Walk and talk om {topic}|Julemarked i {place}"
).split("|")
SERIES_TITLES = (
    "Sprogcafé|Lektiecafé|Klimacafé hver torsdag|Løbeklub|Strikkeklub|Fællesspisning|"
    "Repair Café|Danskundervisning for {group}|Kor for {group}|Yoga i {place}|Bogklub"
).split("|")
FILLER = (
    "Vi taler om {topic}, og hvad vi selv kan gøre; der er plads til både spørgsmål og uenighed.",
    "Arrangementet er gratis, men vi sætter pris på et bidrag til kaffen, teen og kagen.",
    "Oplægsholderen har i mange år arbejdet med {topic} og fortæller om erfaringer, fejl og gode "
    "eksempler.",
    "Der er særligt fokus på {group}; alle er dog velkomne, og du behøver ikke at være medlem.",
    "Husk at tilmelde dig, så vi ved, hvor meget mad vi skal lave.",
    "Lokalet ligger i stueetagen; der er elevator, handicaptoilet og cykelparkering ved indgangen.",
    "Efter oplægget deler vi os i grupper, og hver gruppe laver et forslag til næste skridt.",
    "Vi samarbejder med andre foreninger i netværket om {topic}, så kom og mød nye ansigter.",
    "Tag varmt tøj på, hvis vejret er dårligt; vi er udenfor en stor del af tiden.",
    "Børn er velkomne, og der er legetøj, farver og papir i hjørnet ved vinduet.",
    "Har du spørgsmål, så skriv til os; vi svarer normalt inden for et par dage.",
    "Mødet foregår på dansk, men spørgsmål på engelsk, arabisk eller ukrainsk er også velkomne.",
)


def title_for(rng: random.Random, org: str) -> str:
    """An event title from the word lists, now and then with the organisation's name."""
    return rng.choice(TITLES).format(
        year=rng.choice((2026, 2027)),
        group=rng.choice(GROUPS),
        topic=rng.choice(TOPICS),
        film=rng.choice(FILMS),
        beach=rng.choice(BEACHES),
        dish=rng.choice(DISHES),
        place=rng.choice(PLACES),
        org=org,
    )


def address(rng: random.Random) -> str:
    """A Danish address with commas, sometimes with a room first."""
    street = f"{rng.choice(STREETS)} {rng.randrange(1, 120)}"
    town = rng.choice(PLACES)
    text = f"{street}, {rng.randrange(1000, 9990)} {town}"
    if rng.random() < 0.4:
        text = f"{rng.choice(('Salen', 'Lokale 2', 'Mødelokale 1.12', 'Caféen'))}, {text}"
    return text


def description(rng: random.Random, org: str, domain: str, title: str, url: str) -> str:
    """300 to 2,000 characters in paragraphs: an invitation, filler, practical notes, a link."""
    target = int(300 + 1700 * rng.random() ** 2)
    intro = (
        f"{org} inviterer til {title[0].lower() + title[1:]}; alle er velkomne, også hvis du er "
        "ny. Tag gerne en ven, en kollega eller din nabo med."
    )
    paragraphs, body, size = [intro], [], len(intro)
    while size < target - 200:
        body.append(rng.choice(FILLER).format(topic=rng.choice(TOPICS), group=rng.choice(GROUPS)))
        size += len(body[-1]) + 1
        if len(body) == 3:
            paragraphs.append(" ".join(body))
            body = []
    if body:
        paragraphs.append(" ".join(body))
    if rng.random() < 0.3:
        paragraphs.append("Program:\n17.00 Velkomst\n17.15 Oplæg og spørgsmål\n18.30 Vi spiser")
    paragraphs.append(f"Tilmelding og mere information: {url}\nKontakt: kontakt@{domain}")
    return "\n\n".join(paragraphs)[:2000]


@dataclass(frozen=True)
class Member:
    """One member organisation: its number, name and the calendar program it exports from."""

    #: 1-based, as in the file name m0001.ics
    number: int
    name: str
    #: google, outlook or nextcloud
    flavour: str
    #: the TZID its events are written in
    tzid: str

    @property
    def id(self) -> str:
        return f"m{self.number:04d}"

    @property
    def domain(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.name.lower().translate(_ASCII)).strip("-")
        return f"{slug}.dk"


_ASCII = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa", "é": "e", "ü": "u"})


def member(number: int) -> Member:
    """Member `number`: its name from the word lists, its exporter by turns."""
    kinds, places = len(ORG_KINDS), len(PLACES)
    i = number - 1
    name = f"{ORG_KINDS[i % kinds]} {PLACES[(i // kinds) % places]}"
    if i >= kinds * places:
        name += f" {i // (kinds * places) + 1}"
    flavour = ("google", "nextcloud", "google", "outlook")[i % 4]
    tzid = WINDOWS_ZONE if flavour == "outlook" and i % 12 == 3 else "Europe/Copenhagen"
    return Member(number, name, flavour, tzid)
