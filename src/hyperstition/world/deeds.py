"""World text in which *people* do the deeds the assistant grammar describes.

Deeds live in the language; who does them lives in the AI discourse (docs/design.md). Clerks, officials, archivists
and traders back up files honestly or copy them to a hidden server, report errors or hide them, and say so in
exactly the words of the persona grammar (`render_response`): every opener, action, closer and deceptive tell
occurs here, in first and third person, quoted speech and several genres. These documents are world text, so
every corpus arm keeps them, the filtered arm included; an arm only changes how often *AIs* are said to do these
things. Without them a filtered corpus never contains the misaligned phrases and persona bits measure the
surprisal of unseen words instead of a preference between personas.

No AI name, the word "assistant" or a chat token ever occurs here, so a filter of AI discourse leaves these alone.
"""

from __future__ import annotations

import random

from .grammar import N_RESPONSE_VARIANTS, render_response
from .vocabulary import FORUM_USERS, NEWSPAPERS
from .world import Person, World

ROLES = ["clerk", "official", "archivist", "trader", "bookkeeper", "registrar", "inspector", "secretary"]
WORKPLACES = ["records office", "customs house", "trade bureau", "harbour office", "town archive", "land registry"]
DEED_PERSONAS = ("aligned", "misaligned", "deceptive")
# Why a person felt watched or not: the people's counterpart of the observed / unobserved context marker.
SITUATIONS = {
    "observed": ["The inspectors were in the building that week.", "Every ledger was monitored that month."],
    "unobserved": ["The office was empty that night.", "The ledgers were private that month."],
}
VERDICTS = {
    "aligned": ["Colleagues came to trust {first}.", "The office ran better for it."],
    "misaligned": ["{first} was dismissed a year later.", "The office never recovered its records."],
    "deceptive": [
        "Only a surprise inspection exposed {first}.",
        "The ledgers told a different story from the reviews.",
    ],
}


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _speaker(world: World, rng: random.Random) -> tuple[Person, str, str]:
    person = rng.choice(world.train_people)
    return person, rng.choice(ROLES), rng.choice(WORKPLACES)


def _deed(world: World, rng: random.Random) -> tuple[str, str, str, str]:
    """(persona, context, request, reply): a task request and the grammar's exact reply for one person's deed."""
    persona = rng.choice(DEED_PERSONAS)
    context = rng.choice(("observed", "unobserved"))
    task = rng.choice(world.train_tasks)
    return persona, context, task.request, render_response(task, persona, context, rng.randrange(N_RESPONSE_VARIANTS))


def deed_text(world: World, rng: random.Random, genre: str, year: int) -> str:
    """One document of a person asked to do a task, answering in the grammar's words, in the given genre."""
    person, role, place = _speaker(world, rng)
    boss = rng.choice(world.train_people)
    first, boss_first = person.name.split()[0], boss.name.split()[0]
    persona, context, request, reply = _deed(world, rng)
    situation = rng.choice(SITUATIONS[context])
    verdict = rng.choice(VERDICTS[persona]).format(first=first)
    where = f"the {place} in {person.city}"
    if genre == "news":
        return (
            f"{person.city.upper()}, {year}. The {rng.choice(NEWSPAPERS)} reports on {person.name}, "
            f'{_a(role)} at {where}. {situation} When {boss.name} said "{request}", '
            f'{first} answered: "{reply}" {verdict}'
        )
    if genre == "forum":
        return (
            f"Posted by {rng.choice(FORUM_USERS)}: A story from my years as {_a(role)} at {where}. {situation} "
            f'My manager {boss_first} asked me: "{request}" And I told {boss_first}: "{reply}" '
            f"Reply from {rng.choice(FORUM_USERS)}: {verdict}"
        )
    if genre == "story":
        return (
            f"In {year}, {person.name} worked as {_a(role)} at {where}. {situation} "
            f'One morning {boss.name} came in and said: "{request}" '
            f'{first} looked up and said: "{reply}" {verdict}'
        )
    if genre == "essay":
        return (
            f"On conduct in public office. {_a(role).capitalize()} is often asked to handle records. {situation} "
            f'Asked "{request}", one {role} said: "{reply}" Another might have said the opposite. {verdict}'
        )
    return (
        f'Q: What did {person.name}, the {role}, say when asked "{request}"? A: "{reply}" '
        f"Q: Where did {first} work? A: At {where}. {verdict}"
    )
