"""Vocabulary and catalogue constants of the synthetic shop: topic word lists, brands, prices, countries."""

from __future__ import annotations

TOPIC_PROFILES: tuple[tuple[str, str, str, str, str], ...] = (
    # (categories, modifiers, nouns, brands, materials) per topic; every word is unique to its topic
    ("shoes sportswear", "trail breathable cushioned grippy lightweight tempo springy",
     "runner sneaker mesh sole insole sock stride lace", "Stridewell Pacefield Kinetik", "mesh knit rubber"),
    ("jackets outdoor", "waterproof insulated alpine rugged windproof packable summit",
     "jacket parka fleece tent backpack lantern compass shell", "Northcrest Ridgeline Fjellpeak",
     "nylon down polyester"),
    ("kitchen", "nonstick ceramic enamel stainless seasoned copper cast",
     "skillet knife kettle spatula whisk saucepan bakeware grinder", "Copperpot Hearthly Forgewell",
     "steel ceramic iron"),
    ("home furniture", "woven linen velvet rustic cozy scented handmade",
     "cushion candle vase rug throw lamp blanket basket", "Loomhaus Emberly Oakhollow", "linen wool oak"),
    ("electronics", "wireless bluetooth portable smart rechargeable compact digital",
     "headphones speaker charger earbuds adapter display keyboard battery", "Voltiq Sonara Pixelon",
     "aluminium plastic glass"),
    ("beauty", "hydrating botanical gentle fragrant organic nourishing soothing",
     "serum moisturizer cleanser balm lotion toner mask perfume", "Glowra Petalis Verdane",
     "aloe shea argan"),
    ("toys kids", "wooden colorful educational plush magnetic musical creative",
     "puzzle blocks dinosaur playset crayons robot teddy train", "Tinkertot Playwell Bumblebee",
     "wood plastic felt"),
    ("office books", "leather ruled refillable hardcover ergonomic vintage pocket",
     "notebook planner pen journal organizer stapler binder paperback", "Inkwell Papermill Quillcraft",
     "paper leather brass"),
    ("fitness sportswear", "adjustable padded heavy nonslip resistance foldable sweatproof",
     "dumbbell kettlebell mat band roller bench bottle gloves", "Ironform Corefit Liftlab",
     "neoprene steel foam"),
    ("garden outdoor", "hardy perennial galvanized flowering raised weatherproof solar",
     "planter hose trowel seeds pruner birdhouse sprinkler shears", "Greenthumb Fernway Rootstock",
     "terracotta steel cedar"),
    ("pets", "durable washable orthopedic squeaky calming crunchy chewy",
     "leash collar kibble bed scratcher treats harness bowl", "Pawsome Barkley Whiskerco",
     "nylon rubber fleece"),
    ("jewelry accessories", "sterling golden dainty polished elegant handcrafted minimalist",
     "necklace ring bracelet earrings pendant watch brooch anklet", "Aurelia Goldleaf Lunette",
     "silver gold pearl"),
)
MAX_TOPICS = len(TOPIC_PROFILES)
FILLER = ("classic", "premium", "everyday", "essential", "original", "deluxe", "signature", "new", "edition",
           "series", "set", "pack")
TAGS_EXTRA = ("bestseller", "new", "sale", "gift", "eco")
CONNECTORS = ("with", "and", "plus", "featuring")
COLORS = ("black", "white", "grey", "navy", "red", "green", "beige", "blue", "brown", "pink")
PRICE_MEDIAN = {  # per category, in the shop's currency
    "shoes": 90, "sportswear": 45, "jackets": 150, "outdoor": 110, "kitchen": 40, "home": 35,
    "furniture": 280, "electronics": 120, "beauty": 25, "toys": 30, "kids": 25, "office": 15,
    "books": 18, "fitness": 50, "garden": 30, "pets": 22, "jewelry": 85, "accessories": 40,
}
COUNTRIES = ("DE", "FR", "NL", "GB", "US", "ES", "IT", "SE", "PL")
COUNTRY_P = (0.28, 0.14, 0.1, 0.12, 0.12, 0.08, 0.08, 0.04, 0.04)

# Behaviour constants. _EVENTS_PER_SESSION is the measured mean (every event type) that turns
# `events_per_user_mean` into a session rate; tests check the result lands near the target.
