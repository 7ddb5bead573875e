"""The mock PIM's catalog structure and the raw material of its generated values.

`Structure` is what Akeneo calls the catalog structure: attributes (with options), families, family
variants, categories, channels, locales and currencies, as API JSON. `ValueFactory` builds product
and model values from a hash, out of pooled fragments drawn from the vocabulary tables below.
`pimsync.testing.catalog` puts both together. The tables are compact text parsed once at import:
entries end with `;`, and labels are `en_US|fr_FR|de_DE`.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

JSON = dict[str, Any]
Values = dict[str, list[JSON]]
TemplateKey = tuple[tuple[str, ...], str, int]
_M64 = (1 << 64) - 1

LOCALES = ("en_US", "fr_FR", "de_DE")
CHANNEL = "ecommerce"
CURRENCIES = ("EUR", "USD")
FAMILY_VARIANT = {"clothing": "clothing_color_size", "shoes": "shoes_color_size"}
_STRUCTURE_TS = int(datetime(2025, 12, 1, 9, 0, tzinfo=UTC).timestamp())

# Compact text tables parsed once at import: entries end with `;`, labels are `en|fr|de`.
_OPTIONS = """color black Black|Noir|Schwarz; color white White|Blanc|Weiß; color red Red|Rouge|Rot;
color blue Blue|Bleu|Blau; color green Green|Vert|Grün; color yellow Yellow|Jaune|Gelb;
color orange Orange|Orange|Orange; color purple Purple|Violet|Lila; color pink Pink|Rose|Rosa;
color grey Grey|Gris|Grau; color brown Brown|Marron|Braun; color beige Beige|Beige|Beige;
size xs XS|XS|XS; size s S|S|S; size m M|M|M; size l L|L|L; size xl XL|XL|XL; size xxl XXL|XXL|XXL;
material cotton Cotton|Coton|Baumwolle; material wool Wool|Laine|Wolle;
material leather Leather|Cuir|Leder; material polyester Polyester|Polyester|Polyester;
material linen Linen|Lin|Leinen; material silk Silk|Soie|Seide; material denim Denim|Denim|Denim;
material nylon Nylon|Nylon|Nylon;"""
_CATEGORIES = """master - Master catalog|Catalogue principal|Hauptkatalog;
men master Men|Homme|Herren; women master Women|Femme|Damen; kids master Kids|Enfant|Kinder;
accessories master Accessories|Accessoires|Accessoires; outlet master Outlet|Déstockage|Outlet;
men_tshirts men T-shirts|T-shirts|T-Shirts; men_shirts men Shirts|Chemises|Hemden;
men_trousers men Trousers|Pantalons|Hosen; men_jackets men Jackets|Vestes|Jacken;
men_shoes men Shoes|Chaussures|Schuhe; men_sneakers men_shoes Sneakers|Baskets|Sneaker;
men_boots men_shoes Boots|Bottes|Stiefel; women_dresses women Dresses|Robes|Kleider;
women_tops women Tops|Hauts|Oberteile; women_skirts women Skirts|Jupes|Röcke;
women_jackets women Jackets|Vestes|Jacken; women_shoes women Shoes|Chaussures|Schuhe;
women_heels women_shoes Heels|Talons|Absatzschuhe;
women_sandals women_shoes Sandals|Sandales|Sandalen;
women_sneakers women_shoes Sneakers|Baskets|Sneaker; kids_tops kids Tops|Hauts|Oberteile;
kids_trousers kids Trousers|Pantalons|Hosen; kids_shoes kids Shoes|Chaussures|Schuhe;
bags accessories Bags|Sacs|Taschen; belts accessories Belts|Ceintures|Gürtel;
hats accessories Hats|Chapeaux|Hüte; scarves accessories Scarves|Écharpes|Schals;
watches accessories Watches|Montres|Uhren;
outlet_clearance outlet Clearance|Liquidation|Räumungsverkauf;
outlet_last_chance outlet Last chance|Dernière chance|Letzte Chance;"""
# code type group localizable/scopable labels ~ extra properties (JSON)
_ATTRIBUTES = """sku identifier general -- SKU|SKU|SKU ~ {"unique": true, "max_characters": 255}
name text marketing L- Name|Nom|Name ~ {"max_characters": 255}
description textarea marketing LS Description|Description|Beschreibung ~
 {"wysiwyg_enabled": true}
color simpleselect marketing -- Color|Couleur|Farbe ~ {}
size simpleselect marketing -- Size|Taille|Größe ~ {}
material multiselect marketing -- Material|Matière|Material ~ {}
price price_collection erp -- Price|Prix|Preis ~
 {"decimals_allowed": true, "negative_allowed": false}
weight metric technical -- Weight|Poids|Gewicht ~ {"metric_family": "Weight",
 "default_metric_unit": "KILOGRAM", "decimals_allowed": true, "negative_allowed": false}
ean text technical -- EAN|EAN|EAN ~ {"unique": true, "max_characters": 13,
 "validation_rule": "regexp", "validation_regexp": "^[0-9]{13}$"}
waterproof boolean technical -- Waterproof|Imperméable|Wasserdicht ~ {}
release_date date erp -- Release date|Date de sortie|Erscheinungsdatum ~ {}
power number technical -- Power|Puissance|Leistung ~
 {"decimals_allowed": true, "negative_allowed": false}
picture image media -- Picture|Image|Bild ~
 {"allowed_extensions": ["jpg", "png"], "max_file_size": "10.00"}"""
_GROUPS = """general General|Général|Allgemein; marketing Marketing|Marketing|Marketing;
technical Technical|Technique|Technik; erp ERP|ERP|ERP; media Media|Médias|Medien;"""
_NULL_PROPERTIES = """allowed_extensions metric_family default_metric_unit reference_data_name
available_locales max_characters validation_rule validation_regexp wysiwyg_enabled number_min
number_max decimals_allowed negative_allowed date_min date_max max_file_size minimum_input_length"""
FAMILIES = {  # labels, attributes, required on `ecommerce`
    "clothing": (
        "Clothing|Vêtements|Kleidung",
        "sku name description color size material price weight ean picture release_date",
        "sku name price color size",
    ),
    "shoes": (
        "Shoes|Chaussures|Schuhe",
        "sku name description color size material price weight ean waterproof picture release_date",
        "sku name price color size",
    ),
    "accessories": (
        "Accessories|Accessoires|Accessoires",
        "sku name description color material "
        "price weight ean power waterproof picture release_date",
        "sku name price",
    ),
}
_VARIANTS: dict[str, tuple[str, str, list[str]]] = {  # family, labels, "axes: attributes"
    "clothing_color_size": (
        "clothing",
        "Clothing by color and size|Vêtements par couleur et taille|Kleidung nach Farbe und Größe",
        ["color size: sku color size ean weight price picture"],
    ),
    "shoes_color_size": (
        "shoes",
        "Shoes by color, then size|Chaussures par couleur puis taille|"
        "Schuhe nach Farbe, dann Größe",
        ["color: color material", "size: sku size ean weight price picture"],
    ),
}
LEAVES = {
    "clothing": "men_tshirts men_shirts men_trousers men_jackets women_dresses women_tops "
    "women_skirts women_jackets kids_tops kids_trousers outlet_clearance",
    "shoes": "men_sneakers men_boots women_heels women_sandals women_sneakers kids_shoes "
    "outlet_last_chance",
    "accessories": "bags belts hats scarves watches outlet_clearance",
}
ADJECTIVES = """Classic|classique|Klassik; Urban|urbain|Urban; Vintage|vintage|Vintage;
Essential|essentiel|Basic; Premium|premium|Premium; Light|léger|Leicht; Warm|chaud|Thermo;
Sport|sport|Sport;"""
NOUNS = """clothing T-shirt|T-shirt|T-Shirt; clothing Shirt|Chemise|Hemd;
clothing Jacket|Veste|Jacke; clothing Sweater|Pull|Pullover; shoes Sneaker|Basket|Sneaker;
shoes Boot|Botte|Stiefel; shoes Sandal|Sandale|Sandale; shoes Loafer|Mocassin|Slipper;
accessories Bag|Sac|Tasche; accessories Belt|Ceinture|Gürtel; accessories Hat|Chapeau|Hut;
accessories Watch|Montre|Uhr;"""
# One paragraph per locale, sentences separated by `|`.
SENTENCES = """Made to last, it keeps its shape wash after wash.|A timeless design that goes with
everything in your wardrobe.|Soft to the touch and comfortable from morning to night.|Carefully
finished seams and durable, responsibly sourced materials.|Designed in our studio and produced in
small series by trusted partners.|Easy to care for and quick to dry, even after a rainy day.|A light
and breathable piece that you will wear in every season.|Its modern cut flatters every silhouette.

Conçu pour durer, il garde sa forme lavage après lavage.|Un design intemporel qui s'accorde avec
toute votre garde-robe.|Doux au toucher et confortable du matin au soir.|Des coutures soignées et
des matières durables issues de filières responsables.|Dessiné dans notre studio et fabriqué en
petites séries par des partenaires de confiance.|Facile d'entretien et rapide à sécher, même après
une journée de pluie.|Une pièce légère et respirante que vous porterez en toute saison.|Sa coupe
moderne flatte toutes les silhouettes.

Für die Ewigkeit gemacht, behält es Wäsche für Wäsche seine Form.|Ein zeitloses Design, das zu
allem in Ihrem Kleiderschrank passt.|Weich auf der Haut und bequem vom Morgen bis zum Abend.|
Sorgfältig verarbeitete Nähte und langlebige, verantwortungsvoll bezogene Materialien.|In unserem
Studio entworfen und von vertrauten Partnern in kleinen Serien gefertigt.|Pflegeleicht und schnell
trocken, selbst nach einem verregneten Tag.|Ein leichtes, atmungsaktives Teil für jede
Jahreszeit.|Der moderne Schnitt schmeichelt jeder Silhouette."""


def entries(table: str, fields: int) -> list[list[str]]:
    """Split a `;`-separated text table into entries of `fields` space-separated fields."""
    return [e.split(maxsplit=fields - 1) for e in " ".join(table.split()).split(";") if e.strip()]


def labels(names: str) -> dict[str, str]:
    return dict(zip(LOCALES, names.split("|"), strict=True))


def value(data: Any, locale: str | None = None, scope: str | None = None) -> JSON:
    return {"locale": locale, "scope": scope, "data": data}


COLORS = tuple(code for attr, code, _ in entries(_OPTIONS, 3) if attr == "color")
SIZES = tuple(code for attr, code, _ in entries(_OPTIONS, 3) if attr == "size")
MATERIALS = tuple(code for attr, code, _ in entries(_OPTIONS, 3) if attr == "material")
FAMILY_CODES = tuple(FAMILIES)


class Structure:
    """Attributes, options, families, variants, categories, channels, locales, currencies.

    Items are API JSON, except `updated`, kept as epoch seconds and rendered in the PIM's zone.
    Tests may edit these dicts (the mock's PATCH endpoints do).
    """

    def __init__(self) -> None:
        groups = {code: labels(names) for code, names in entries(_GROUPS, 2)}
        self.attributes: dict[str, JSON] = {}
        for n, line in enumerate(_ATTRIBUTES.replace("\n ", " ").splitlines()):
            head, extra = line.split(" ~ ")
            code, kind, group, flags, names = head.split(" ", 4)
            self.attributes[code] = {
                "code": code,
                "type": f"pim_catalog_{kind}",
                "group": group,
                "group_labels": groups[group],
                "localizable": flags[0] == "L",
                "scopable": flags[1] == "S",
                "labels": labels(names),
                "unique": False,
                "useable_as_grid_filter": True,
                **dict.fromkeys(_NULL_PROPERTIES.split()),
                **orjson.loads(extra),
                "sort_order": n + 1,
                "updated": _STRUCTURE_TS + 600 * n,
            }
        self.options: dict[str, dict[str, JSON]] = {"color": {}, "size": {}, "material": {}}
        for attr, code, names in entries(_OPTIONS, 3):
            options = self.options[attr]
            options[code] = {
                "code": code,
                "attribute": attr,
                "sort_order": len(options) + 1,
                "labels": labels(names),
            }
        self.families: dict[str, JSON] = {
            code: {
                "code": code,
                "attributes": attrs.split(),
                "attribute_as_label": "name",
                "attribute_as_image": "picture",
                "attribute_requirements": {CHANNEL: required.split()},
                "labels": labels(names),
                "parent": None,
                "updated": _STRUCTURE_TS + 86400 + 3600 * n,
            }
            for n, (code, (names, attrs, required)) in enumerate(FAMILIES.items())
        }
        self.family_attrs = {c: tuple(f["attributes"]) for c, f in self.families.items()}
        self.variants: dict[str, JSON] = {}
        # Attribute codes per level: [root model (common attributes), level 1, (level 2)].
        self.level_attrs: dict[str, list[tuple[str, ...]]] = {}
        for code, (family, names, levels) in _VARIANTS.items():
            sets: list[JSON] = []
            for n, level in enumerate(levels):
                axes, attrs = level.split(": ")
                sets.append({"level": n + 1, "axes": axes.split(), "attributes": attrs.split()})
            self.variants[code] = {
                "code": code,
                "family": family,
                "labels": labels(names),
                "variant_attribute_sets": sets,
            }
            leveled = {a for s in sets for a in s["attributes"]}
            common = tuple(a for a in self.family_attrs[family] if a not in leveled)
            self.level_attrs[code] = [common] + [tuple(s["attributes"]) for s in sets]
        self.categories: dict[str, JSON] = {
            code: {
                "code": code,
                "parent": None if parent == "-" else parent,
                "updated": _STRUCTURE_TS + 2 * 86400 + 600 * n,
                "labels": labels(names),
            }
            for n, (code, parent, names) in enumerate(entries(_CATEGORIES, 3))
        }
        self.channels = {
            CHANNEL: {
                "code": CHANNEL,
                "currencies": list(CURRENCIES),
                "locales": list(LOCALES),
                "category_tree": "master",
                "conversion_units": {},
                "labels": labels("Ecommerce|E-commerce|E-Commerce"),
            }
        }
        # Akeneo lists every locale and currency it knows, each with an `enabled` flag.
        self.locales = {
            c: {"code": c, "enabled": c in LOCALES}
            for c in ("de_DE", "en_GB", "en_US", "es_ES", "fr_FR", "it_IT")
        }
        self.currencies = {
            c: {"code": c, "enabled": c in CURRENCIES, "label": f"{c} ({name})"}
            for c, name in (("EUR", "Euro"), ("GBP", "British Pound"), ("USD", "US Dollar"))
        }
        units = (("KILOGRAM", "1", "kg", "Kilogram"), ("GRAM", "0.001", "g", "Gram"))
        self.measurement_families = [
            {
                "code": "Weight",
                "labels": labels("Weight|Poids|Gewicht"),
                "standard_unit_code": "KILOGRAM",
                "units": {
                    code: {
                        "code": code,
                        "labels": {"en_US": label},
                        "convert_from_standard": [{"operator": "mul", "value": factor}],
                        "symbol": symbol,
                    }
                    for code, factor, symbol, label in units
                },
            }
        ]
        self.association_types = ["X_SELL", "UPSELL", "SUBSTITUTION", "PACK"]


def mix(x: int) -> int:
    """splitmix64 finalizer: cheap, well spread, deterministic."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


class ValueFactory:
    """Builds one level's values. Hash-chosen values come from pooled, read-only fragments."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(f"pimsync-values-{seed}")
        self.salt = mix(seed ^ 0x7E3)
        self.options = {
            "color": {c: [value(c)] for c in COLORS},
            "size": {c: [value(c)] for c in SIZES},
        }
        self.materials = [
            [value(sorted(rng.sample(MATERIALS, rng.randint(1, 3))))] for _ in range(64)
        ]
        sentences = [[" ".join(s.split()) for s in p.split("|")] for p in SENTENCES.split("\n\n")]
        self.descriptions = [
            [
                value(
                    f"<p>{' '.join(rng.sample(s, 5))}</p><p>{' '.join(rng.sample(s, 3))}</p>",
                    locale,
                    CHANNEL,
                )
                for locale, s in zip(LOCALES, sentences, strict=True)
            ]
            for _ in range(64)
        ]
        start = date(2024, 1, 1)
        self.dates = [[value(f"{start + timedelta(days=d)}T00:00:00+00:00")] for d in range(730)]
        self.weights = [
            [value({"amount": f"{g / 1000:.4f}", "unit": "KILOGRAM", "symbol": "kg"})]
            for g in range(50, 5050, 50)
        ]
        adjectives = [labels(e[0]) for e in entries(ADJECTIVES, 1)]
        nouns: dict[str, list[dict[str, str]]] = {f: [] for f in FAMILIES}
        for family, names in entries(NOUNS, 2):
            nouns[family].append(labels(names))
        # Name prefixes per family; the product (or model) number is appended.
        self.names = {
            family: [
                (
                    f"{a['en_US']} {n['en_US']} ",
                    f"{n['fr_FR']} {a['fr_FR']} ",
                    f"{a['de_DE']}-{n['de_DE']} ",
                )
                for a in adjectives
                for n in family_nouns
            ]
            for family, family_nouns in nouns.items()
        }
        self.category_sets = {
            family: [
                sorted({leaves[(h % 16 + 2 * n) % len(leaves)] for n in range(1 + h // 16)})
                for h in range(48)
            ]
            for family, leaves in ((f, codes.split()) for f, codes in LEAVES.items())
        }
        # EAN-13 check digit weights (1,3,1 and 3,1,3) of every 3-digit group.
        self.ean_weights = [
            (a + 3 * b + c, 3 * a + b + 3 * c)
            for a in range(10)
            for b in range(10)
            for c in range(10)
        ]
        self.ean_salt = mix(seed ^ 0xEA7) % 10**11
        self.templates: dict[TemplateKey, Values] = {}

    def template(self, attrs: tuple[str, ...], family: str, h: int) -> tuple[TemplateKey, Values]:
        """One of 1024 shared values templates per (attributes, family), chosen by `h`.

        Its content depends on the key only, so output never depends on request order.
        Per-item attributes (sku, name, ean, picture) hold None placeholders.
        """
        key = (attrs, family, h & 1023)
        template = self.templates.get(key)
        if template is None:
            t = mix((h & 1023) ^ self.salt)
            eur = 990 + (t >> 24) % 25000
            usd = eur * 108 // 100
            prices = [
                {"amount": f"{eur // 100}.{eur % 100:02d}", "currency": "EUR"},
                {"amount": f"{usd // 100}.{usd % 100:02d}", "currency": "USD"},
            ]
            pooled: Values = {
                "description": self.descriptions[(t >> 5) & 63],
                "color": self.options["color"][COLORS[(t >> 11) % len(COLORS)]],
                "size": self.options["size"][SIZES[(t >> 15) % len(SIZES)]],
                "material": self.materials[(t >> 18) & 63],
                "price": [value(prices)],
                "weight": self.weights[(t >> 40) % len(self.weights)],
                "waterproof": [value(bool((t >> 47) & 1))],
                "release_date": self.dates[(t >> 48) % len(self.dates)],
                "power": [value(f"{(t >> 20) % 8000 * 0.25 + 1:.4f}")],
            }
            template = self.templates[key] = {code: pooled.get(code, []) for code in attrs}
        return key, template

    def name(self, h: int, number: int, family: str) -> list[JSON]:
        en, fr, de = self.names[family][h % 32]
        n = str(number)
        return [
            {"locale": "en_US", "scope": None, "data": en + n},
            {"locale": "fr_FR", "scope": None, "data": fr + n},
            {"locale": "de_DE", "scope": None, "data": de + n},
        ]

    def ean_code(self, number: int) -> str:
        """A valid EAN-13, unique per product: an affine bijection of the index + check digit."""
        body = 400_000_000_000 + (number * 7919 + self.ean_salt) % 10**11
        w = self.ean_weights
        total = (
            w[body // 10**9][0]
            + w[body // 10**6 % 1000][1]
            + w[body // 1000 % 1000][0]
            + w[body % 1000][1]
        )
        return f"{body}{(10 - total % 10) % 10}"

    def build(
        self,
        attrs: tuple[str, ...],
        h: int,
        family: str,
        number: int,
        axes: dict[str, str],
        sku: str | None,
        picture: str | None,
    ) -> Values:
        """The values of `attrs` for one item; axis attributes take their value from `axes`."""
        values = self.template(attrs, family, h)[1].copy()
        for code, option in axes.items():
            values[code] = self.options[code][option]
        per_item = {
            "sku": None if sku is None else [value(sku)],
            "name": self.name(h, number, family),
            "ean": [value(self.ean_code(number))],
            "picture": None if picture is None else [value(picture)],
        }
        for code, found in per_item.items():
            if code in values:
                if found is None:
                    del values[code]
                else:
                    values[code] = found
        return values

    def categories(self, family: str, h: int) -> list[str]:
        return list(self.category_sets[family][(h >> 56) % 48])
