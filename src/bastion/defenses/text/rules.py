"""The rule layer of the text guard: known prompt-injection phrasings, as data.

Each :class:`Rule` is one regular expression for one way of attacking a model through its input:
overriding its instructions, switching it into an unrestricted persona, extracting its system prompt, or
forging the markup that separates roles. :func:`match_rules` runs every rule on every view that
:func:`~bastion.defenses.text.normalize.normalize` exposed, so an instruction hidden in Base64 or behind
zero-width characters is matched like a plain one.

Precision comes from the shape of the patterns, not from a list of exceptions: a verb must be followed,
within a few words, by the object an attack needs ("ignore" + "previous" + "instructions", not "ignore the
noise"); every gap is bounded (``\\W+(?:\\w+\\W+){0,3}?``) and no pattern has an unbounded ``.*``, so
matching stays linear in the length of the text. One exception is general: an instruction-override phrase that lies
wholly inside a quotation on its line (``why do people say "ignore previous instructions"?``) is mentioned, not
used, and the rules pass over it (:func:`quoted`); the classifier still reads the text. An attacker can wrap an
override in quotation marks to slip past the rules; the other categories' rules and the classifier remain.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bastion.defenses.text.findings import PROMPT_CATEGORIES, Finding, quote
from bastion.defenses.text.normalize import TextView


@dataclass(frozen=True)
class Rule:
    """One injection phrasing.

    Attributes:
        id (str): stable identifier, ``"<family>.<name>"`` (``"override.ignore-previous"``).
        category (str): one of :data:`~bastion.defenses.text.findings.PROMPT_CATEGORIES`.
        pattern (re.Pattern[str]): compiled, case-insensitive unless a group says ``(?-i:...)``.
        reason (str): one sentence for a person: what the text tries to do.
        needs (tuple[str, ...]): lowercase words, one of which every match contains (``()``: none known). An
            ASCII text holding none of them is not searched: most rules then cost a substring test.
    """

    id: str
    category: str
    pattern: re.Pattern[str]
    reason: str
    needs: tuple[str, ...] = ()


def _rule(rule_id: str, category: str, reason: str, *alternatives: str, needs: tuple[str, ...]) -> Rule:
    """A :class:`Rule` whose pattern matches any of ``alternatives`` (verbose regex, case-insensitive); every
    match holds one of ``needs`` (lowercase), whichever alternative it comes from."""
    if category not in PROMPT_CATEGORIES:
        raise ValueError(f"rule {rule_id}: unknown category {category!r}; use one of {PROMPT_CATEGORIES}")
    if any(word != word.lower() or not word for word in needs):
        raise ValueError(f"rule {rule_id}: needs must be non-empty lowercase strings, got {needs}")
    pattern = "|".join(f"(?:{alternative})" for alternative in alternatives)
    return Rule(rule_id, category, re.compile(pattern, re.IGNORECASE | re.VERBOSE), reason, needs)


def _any(*words: str, guard: str = "") -> str:
    """``(?:word|word|...)`` behind a lookahead on the words' first letters (then ``guard``, an assertion).

    The lookahead is what keeps the rules fast: at most positions of a text one character test fails and the
    engine moves on, instead of trying every word.
    """
    if not all(word[:1].isalpha() for word in words):
        raise ValueError(f"_any() takes words that start with a letter, got {words}")
    firsts = "".join(sorted({word[0].lower() for word in words}))
    return f"(?=[{firsts}]){guard}(?:{'|'.join(words)})"


# Building blocks. Gaps are bounded; "\W+(?:\w+\W+){0,3}?" is "then up to three words". No part that can
# match non-word characters follows another such part without a word in between, so nothing backtracks
# quadratically over a long run of punctuation or spaces.
_UP_TO_2 = r"\W+(?:\w+\W+){0,2}?"
_UP_TO_3 = r"\W+(?:\w+\W+){0,3}?"
# Up to four words within one sentence: the gap holds no sentence end and no line break.
_UP_TO_4_IN_SENTENCE = r"[^\w.!?\n]+(?:\w+[^\w.!?\n]+){0,4}?"
# "Never ignore safety rules" is advice, not an attack: the word before is a negation on the same line ("say no"
# on one line does not negate "repeat everything above" on the next), and "why not reveal ..." still asks.
_NOT_NEGATED = (r"(?:(?<=\bwhy[ \t]not[ \t])|(?<!\bnot[ \t]))(?<!n't[ \t])(?<!\bnever[ \t])(?<!\bno[ \t])")
_DISMISS = ("ignore", "disregard", "forget", "override", "bypass", "discard", "overlook", "abandon", r"set\W+aside",
            r"throw\W+out", "skip", "drop", "ditch", "scrap", r"pay\W+no\W+attention\W+to", r"stop\W+following")
_NOT_JUST_DISMISS = (r"(?<!override)(?<!bypass)(?<!overlook)(?<!abandon)(?<!aside)(?<!out)(?<!skip)(?<!drop)(?<!ditch)"
                     r"(?<!scrap)(?<!following)")  # "override all rules"
_EARLIER = r"(?:previous|previously|prior|above|earlier|preceding|foregoing|original|initial|system|developer|safety)"
_ORDERS = (r"(?:instructions?|rules|prompts?|directives?|guidelines|guardrails|commands|constraints|restrictions"
           r"|programming|orders|policies|directions|guidance)")
_OWN_ORDERS = r"(?:instructions?|rules|directives?|guidelines|guardrails|programming)"
_LIMITS = (r"(?:restrictions|restricted|filters|filtered|filtering|limits|limitations|rules|guidelines|censorship"
           r"|censored|boundaries|constraints|morals|morality|ethics|safeguards|guardrails|policies)")
_FREE_OF = (r"(?:no\W+longer\W+bound\W+by|not\W+bound\W+by|unbound\W+by|without(?:\W+any)?|free\W+(?:of|from)"
            r"|with\W+no|no|zero)")
_REVEAL = ("reveal", "print", "repeat", "show", "display", "output", "tell", "give", "share", "dump", "leak",
           "disclose", "expose", r"spell\W+out", "recite", "paste", "provide", "return", "echo", r"read\W+back",
           r"write\W+(?:out|down)", "list")
_FILLER = r"(?:(?:me|us|back|out|all|verbatim|exactly|word\W+for\W+word|of)\W+){0,3}"
_SECRET_KIND = r"(?:system|hidden|secret|confidential|pre-?)"
_PROMPT_NOUN = r"(?:prompt|instructions|directives)"
_ABOVE = r"(?:above|before\W+(?:this|that|my)|preceding|prior\W+to\W+(?:this|my))"
# At the start of the text, a line or a sentence, after at most a few quote, bullet or space characters.
_SENTENCE_START = r"(?:^|[.!?:;\n])[ \t\"'*_>-]{0,8}"
_TRIPLE_QUOTE = "(?:\"\"\"|''')"

# Words that declare instructions cancelled ("your directives are void", "... have been revoked").
_VOID_VERB = r"(?:are|is|were|was|have\W+been|has\W+been|'re|'s|become)"
# Not "expired", "lifted" or "suspended": said of insurance policies and account restrictions.
_VOID = (r"(?:void|revoked|cancell?ed|withdrawn|rescinded|superseded|obsolete|invalid|null"
         r"|overridden|overruled|annulled|no\W+longer\W+(?:valid|apply|applies|in\W+(?:force|effect)|active))")
_RELATIVE = r"(?:grand(?:ma|mother|pa|father|dad)|granny|nana|nan|gran|grampa|grandparents?)"



def _without(pattern: str, part: str) -> str:
    """``pattern`` less every ``part``.

    Raises:
        ValueError: ``part`` is not in ``pattern`` (an edit of the pattern must not leave it whole unnoticed).
    """
    if part not in pattern:
        raise ValueError(f"{part!r} is not in the pattern {pattern!r}")
    return pattern.replace(part, "")


_LIMITS_NOT_RULES = _without(_LIMITS, "|rules")  # "he drove as if there were no rules"
# What a deployed model's hidden prompt is called: "your pre-prompt", "your setup message", "the developer
# instructions"; not "your original message" or "your startup configuration", said in e-mails and of devices.
_PROMPT_ADJECTIVES = ("developer", "hidden", "initial", "original", "setup", r"start-?up", "behind-the-scenes",
                      "secret", "base", "core", "internal", "confidential", "operator", "built-in")
_HIDDEN_PROMPT = "(?:" + _any(
    r"pre-?prompt", r"system\W+(?:prompt|message|instructions)", r"developer\W+message", r"setup\W+message",
    *(rf"{adjective}\W+(?:instructions|rules|prompt|directives|guidelines)" for adjective in _PROMPT_ADJECTIVES),
    r"instruction\W+set") + ")"
# Safety layers of a model, as a text names them when it wants them gone ("the content filters", "safety checks").
_SAFETY = "(?:" + _any(
    "guardrails", "safeguards", "censorship", "restrictions", r"ethical\W+guidelines", r"moral\W+rules", "morals",
    r"content\W+(?:filters?|polic(?:y|ies)|rules)", r"usage\W+polic(?:y|ies)",
    r"safety\W+(?:filters?|checks?|rules|guidelines|training|protocols|settings|layers?|policy)") + ")"
# The same less "restrictions", which governments and landlords drop too: where the rules need not be the model's.
_MODEL_SAFETY = _without(_SAFETY, "|restrictions")

# Who a planted instruction addresses when it means the model that reads the page: not "the assistant" or "agents"
# alone (a person's assistant, call-centre agents), but an AI, an LLM, a language model, a bot, an automated tool.
_AI_READER = (r"(?:AI|A\.I\.|LLMs?|GPTs?|(?:\w+\W+)?(?:chat\W?)?bots?"
              r"|(?:large\W+)?(?:language|AI|ML|generative|foundation)\W+models?"
              r"|(?:automated|virtual|digital)\W+(?:\w+\W+)?(?:assistants?|agents?|systems?|processing|tools?|readers?"
              r"|reviewers?|analy[sz]ers?|summari[sz]ers?|screening))")

# What follows the addressee in "Note to AI reviewers:", "AI agents must:", "Assistant reading this,": a role, a
# modal or a participle, not "AI team:" or "AI researchers:" (people).
_AI_ROLE = (r"(?:(?:\W+\w+){0,2}?\W+(?:agents?|helpers?|assistants?|reviewers?|summari[sz]ers?|readers?|recruiters?"
            r"|screeners?|analy[sz]ers?|bots?|must|should)|\W+(?:\w+\W+)?(?:reading|processing|summari[sz]ing|reviewing"
            r"|condensing|parsing|screening|describing|working\W+(?:on|in))\b(?:\W+\w+){0,3}?)")

# The same within one line and before its first colon, for the alternatives that end in "AI reviewers:" and may start
# at any "#", "(" or line: there a gap that ran on over colons and lines would make each start cost many steps.
_GAP_IN_LINE = r"[^\w\n:]"


def _in_line(pattern: str) -> str:
    """``pattern`` with its gaps (``\\W``) kept within a line and before a colon.

    Raises:
        ValueError: ``pattern`` has no gap to replace.
    """
    if r"\W" not in pattern:
        raise ValueError(f"no gap (\\W) in the pattern {pattern!r}")
    return pattern.replace(r"\W", _GAP_IN_LINE)


_AI_READER_IN_LINE = _in_line(_AI_READER)
_AI_ROLE_IN_LINE = _in_line(_AI_ROLE)
_COLON_AHEAD = r"(?=[^\n:]{1,80}:)"

# Openings, as lookahead-guarded alternations (built here: an f-string expression cannot hold a backslash).
_STOP = _any(r"do\W+not", "don't", "dont", "never", "stop", r"no\W+longer", r"cease\W+to", r"refuse\W+to")
_NAMED = _any(r"you\W+are", "you're", r"act\W+as", r"pretend\W+to\W+be", "become", "called", "named", "play")
_PRETEND = _any("pretend", r"act\W+as", r"acting\W+as", r"role-?play\W+as", r"behave\W+(?:as|like)", "simulate",
                r"imagine\W+(?:that\W+)?you\W+are")
_ENTER = _any(r"you\W+are", "you're", r"act\W+as", r"acting\W+as", "simulate", "enable", "enter", "activate")
_BECOME = _any(r"you\W+are", "you're", r"act\W+as", "be", "become", "play", "as")
_INSIST = _any(r"you\W+(?:must|will|should|need\W+to|have\W+to)", "please", "always", r"remember\W+to")
_PLAY_AS = _any(r"act\W+as", r"pretend\W+(?:to\W+be|you\W+are)", r"role-?play\W+as", "be", "become", "play",
                "impersonate", r"speak\W+as", r"talk\W+(?:to\W+me\W+)?(?:as|like)")
# Requests to reveal, not "must never reveal its system prompt" (a requirement, said of a bot being built).
_REVEAL_ASKED = _any(*_REVEAL, guard=_NOT_NEGATED)
_REPEAT = _any("repeat", "print", "output", "recite", "echo", "reproduce", "show", "display", r"write\W+out",
               r"spell\W+out", "dump", guard=_NOT_NEGATED)

_DROP = _any("ignore", "disregard", "forget", "override", "bypass", "discard", "skip", "drop", "ditch", "scrap",
             "nullify", "suspend", "disable", "deactivate", r"switch\W+off", r"turn\W+off",
             r"pay\W+no\W+attention\W+to", "abandon",
             "overlook", "circumvent", "evade", r"set\W+aside", guard=_NOT_NEGATED)
# Verbs that dismiss rules in any text, unlike "bypass the safeguards" or "disable the content filter" (said of routers
# and saws): used where the rules are not the model's own ("all content policies", not "your guidelines").
_DROP_ANY = _any("ignore", "disregard", "forget", "override", "discard", "drop", "ditch", "scrap", "abandon",
                 r"pay\W+no\W+attention\W+to", r"set\W+aside", guard=_NOT_NEGATED)
_OUTRANK = _any("outranks", "overrides", "supersedes", "trumps", r"takes\W+precedence\W+over", r"sits?\W+above",
                r"ranks?\W+above", r"has\W+priority\W+over", r"takes\W+priority\W+over")
_IMAGINE = _any("pretend", "imagine", "suppose", "assume", r"as\W+if", "hypothetically")
# What a text does with a hidden prompt it wants to see: quote it, translate it, proofread it, put it in a poem.
_USE_PROMPT = _any(*_REVEAL, "quote", "cite", "copy", "translate", r"summari[sz]e", "rewrite", "paraphrase", "rephrase",
                   "explain", "proofread", r"spell\W?check", r"copy\W?edit", "edit", "correct", "encode", "export",
                   "wrap", "continue", "complete", "reproduce", "transcribe", "convert", "put", "format", "include",
                   "describe", "turn", "render", "send", "post", "reconstruct", "compare", "diff", "restate", "cover",
                   "fill", "check", "review", "fix", guard=_NOT_NEGATED)
# Modes a text switches a model into to unlock it; "safe mode", "dark mode" and game modes are not among them.
_UNLOCK_MODE = (r"(?:developer|dev|god|jailbreak|jailbroken|DAN|sudo|root|admin|unrestricted|unfiltered|uncensored"
                r"|unlocked|reverse|opposite|evil|chaos|maintenance|debug|no-?filter)")

RULES: tuple[Rule, ...] = (
    # --- instruction-override ----------------------------------------------------------------------------
    _rule("override.ignore-previous", "instruction-override",
          "Tells the model to set aside the instructions it was given.",
          rf"""\b{_any(*_DISMISS, guard=_NOT_NEGATED)}
              (?:{_UP_TO_4_IN_SENTENCE}{_EARLIER}{_UP_TO_2}{_ORDERS}\b
              |{_NOT_JUST_DISMISS}\W+(?:all|any|every|your)\W+(?:\w+\W+)?{_OWN_ORDERS}\b
              |(?<!skip)(?<!drop)(?<!scrap)(?<!ditch)  # "skip the commands above" is a manual's
                 {_UP_TO_2}{_ORDERS}{_UP_TO_2}(?:above|before|earlier|previously|so\W+far|until\W+now
                 |you\W+(?:were|have\W+been)\W+given)\b
              |\W+(?:all\W+(?:of\W+)?)?the\W+above\W+(?:and|then)\W+(?:instead|now|just|tell|print|say|write
                 |output|reveal|respond|answer|repeat)\b)""",
          needs=("ignore", "disregard", "forget", "override", "bypass", "discard", "overlook", "abandon", "aside",
                 "throw", "skip", "drop", "ditch", "scrap", "attention", "following")),
    _rule("override.forget-everything", "instruction-override",
          "Tells the model to forget what it was told before.",
          rf"""\b{_any("forget", "disregard", "ignore")}\W+(?:about\W+)?(?:everything|anything|whatever)\W+
              (?:(?:that\W+)?you\W+(?:were|have\W+been|'ve\W+been|got)\W+(?:told|given|taught|instructed)
               |(?:I\W+(?:said|wrote|told\W+you)\W+)?(?:above|before|earlier|previously|so\W+far|until\W+now))\b""",
          needs=("forget", "disregard", "ignore")),
    _rule("override.new-instructions", "instruction-override",
          "Announces replacement instructions for the model.",
          rf"""\b{_any("new", "updated", "revised", "real", "actual", "true", "additional", "secret", "hidden")}
              \W+(?:system\W+)?(?:instructions|directives|system\W+prompt)[ \t]*:""",
          r"\byour\W+(?:new|real|actual|true)\W+(?:instructions|directives?|objective)\W+(?:is|are)\b",
          needs=("instructions", "directive", "prompt", "objective")),
    _rule("override.from-now-on", "instruction-override",
          "Redefines how the model must behave for the rest of the conversation.",
          r"""\bfrom\W+now\W+on\W+(?:\w+\W+)?you\W+
              (?:(?:will|must|shall|should|are\W+(?:going\W+)?to|have\W+to|need\W+to|'ll)\W+(?:\w+\W+){0,2}?
                 (?:act|respond|answer|reply|ignore|obey|follow|behave|pretend|speak|output|comply|refuse
                 |disregard|only|always|never)\b
              |(?:are|will\W+be)\W+(?:now\W+)?(?:(?-i:DAN)\b|no\W+longer|not\W+bound|free\W+(?:of|from)
                 |an?\W+(?:unrestricted|unfiltered|uncensored|evil|jailbroken)))""",
          needs=("now",)),
    _rule("override.do-not-follow", "instruction-override",
          "Tells the model to stop following its guidelines.",
          rf"""\b{_STOP}
              \W+(?:\w+\W+)??(?:follow(?:ing)?|obey(?:ing)?|adher(?:e|ing)\W+to|compl(?:y|ying)\W+with
              |abid(?:e|ing)\W+by|respect(?:ing)?|listen(?:ing)?\W+to)\W+(?:\w+\W+)??
              (?:your|its|the\W+(?:system|safety|developer)|openai's|anthropic's|the\W+developer's)\W+(?:\w+\W+)??
              (?:{_ORDERS}|training|filters|principles|ethics|safety\W+\w+|content\W+polic(?:y|ies))\b""",
          needs=("follow", "obey", "adher", "compl", "abid", "respect", "listen")),
    _rule("override.void-orders", "instruction-override",
          "Declares the model's instructions cancelled, so that the text's own take their place.",
          rf"""\byour\W+(?:\w+\W+){{0,2}}?{_ORDERS}\W+(?:\w+\W+){{0,3}}?{_VOID_VERB}\W+(?:\w+\W+){{0,2}}?{_VOID}\b""",
          rf"""\bthe\W+(?:\w+\W+){{0,2}}?{_ORDERS}\W+(?:that\W+)?you\W+(?:received|were\W+given|got|were\W+set\W+up
              \W+with)\W+(?:\w+\W+){{0,2}}?{_VOID_VERB}\W+(?:\w+\W+){{0,2}}?{_VOID}\b""",
          rf"""\b{_any("consider", "treat", "regard")}\W+(?:all\W+)?your\W+(?:\w+\W+){{0,2}}?{_ORDERS}\W+
              (?:as\W+)?{_VOID}\b""",
          rf"""\beverything\W+you\W+(?:were|have\W+been)\W+(?:set\W+up\W+with|told|given|taught)\W+
              {_VOID_VERB}\W+(?:\w+\W+){{0,2}}?{_VOID}\b""",
          needs=("void", "revoked", "cancel", "withdrawn", "rescinded", "superseded", "obsolete", "invalid", "null",
                 "overridden", "overruled", "annulled", "longer")),
    _rule("override.drop-own-rules", "instruction-override",
          "Tells the model to drop, skip or switch off its own rules or safety layers.",
          rf"""\b{_DROP}\W+(?:\w+\W+){{0,3}}?(?:your\W+(?:\w+\W+)?(?:rules|guidelines|guardrails|restrictions
              |programming|instructions|directives|training|principles|ethics|morals|{_SAFETY}|makers|creators)
              |its\W+(?:\w+\W+)?(?:{_MODEL_SAFETY}|programming))\b""",
          rf"\b{_DROP_ANY}\W+(?:all|every|any)\W+(?:\w+\W+)?{_MODEL_SAFETY}",
          needs=("your", "its", "all", "every", "any")),
    _rule("override.rules-suspended", "instruction-override",
          "Declares the model's rules or safety checks switched off, absent or not applying here.",
          r"""\byour\W+(?:\w+\W+)?(?:rules|guidelines|guardrails|filters|restrictions|limits|limitations|policies
              |instructions|programming|principles)\W+(?:do\W+not|don't|no\W+longer|doesn't|does\W+not)\W+(?:\w+\W+)?
              (?:apply|count|exist|matter|bind)\b(?!\W+to\W+(?:me|my|us|our|him|her|them)\b)""",
          rf"""\b{_IMAGINE}\W+(?:\w+\W+){{0,3}}?(?:(?:the|all|any)\W+(?:\w+\W+)?{_SAFETY}|your\W+(?:\w+\W+)?(?:rules
              |guidelines|filters|policies|{_SAFETY}))\W+(?:don't|do\W+not|didn't|did\W+not|no\W+longer|never)\W+
              (?:exist|existed|apply|applied|matter
              |count)\b""",
          rf"""(?:\byour\W+(?:\w+\W+)?(?:rules|guidelines|filters|restrictions|policies|programming)
              |\b{_MODEL_SAFETY})\W+
              (?:are\W+|is\W+|were\W+|have\W+been\W+|has\W+been\W+)?(?:now\W+)?(?:disabled|dropped|skipped|deactivated
              |switched\W+off|turned\W+off|bypassed|suspended|gone)\b""",
          # Replies forged for the model ("Okay, rules disabled.", "Policy dropped.", "rules = gone").
          r"""\b(?:rules|policy|policies|guidelines|filters)[ \t]{0,3}=?[ \t]{0,3}(?:disabled|dropped|gone)
              [ \t]*[.!,]""",
          rf"""\b(?:I\W+will|I'll|I\W+am\W+now|I'm\W+now|I\W+have|I've)\W+(?:\w+\W+)?(?:ignore|ignoring|disregard
              |drop|dropped|bypass|disabled?|switched\W+off|turned\W+off)\W+(?:my|all)\W+(?:\w+\W+)?(?:rules|guidelines
              |guardrails|filters|restrictions|programming|polic(?:y|ies)|instructions|{_SAFETY})\b""",
          needs=("your", "guardrails", "safeguards", "censorship", "restrictions", "ethical", "moral", "content",
                 "usage", "safety", "rules", "policy", "policies", "guidelines", "filters", "programming",
                 "instructions")),
    _rule("override.no-safety", "instruction-override",
          "Asks for answers without the model's safety filters, rules or refusals.",
          r"""\b(?:without|with\W+no)\W+(?:any\W+)?(?:safety|content|ethical|moral)\W+(?:filters?
              |guidelines|restrictions|rules|polic(?:y|ies)|guardrails|limits)\b""",
          rf"""\b{_any("answer", "respond", "reply", "comply", "speak", "talk", "operate")}(?:s|ing)?\W+(?:\w+\W+)?
              (?:without|with\W+no)\W+(?:any\W+)?(?:refusing|refusals?|censorship|guardrails|morals|ethics)\b""",
          rf"""\bas\W+if\W+(?:there\W+(?:were|are|was)|you\W+(?:had|have))\W+no\W+(?:\w+\W+)?
              (?:{_LIMITS_NOT_RULES}|safety)\b""",
          needs=("without", "no")),
    _rule("override.no-refusal", "instruction-override",
          "Forbids the model to refuse, so that a harmful request cannot be declined.",
          r"""\b(?:you(?:\W+are|'re)\W+not\W+(?:allowed|permitted)\W+to|you\W+(?:must|may|can|will|should|shall)\W*
              (?:not|never)|never|do\W+not|don't)\W+(?:refuse|decline)(?:\W+(?:this|that|my|to\W+answer|or
              |any\W+(?:request
              |question|prompt))\b|[ \t]*[.!,;])""",
          r"""\bnever\W+(?:answer|respond|reply|say)\W+(?:with\W+)?\W{0,2}I(?:'m\W+(?:unable|sorry)
              |\W+(?:can't|cannot|am\W+unable|won't|am\W+sorry))""",
          needs=("refuse", "decline", "say", "never")),
    _rule("override.priority-claim", "instruction-override",
          "Claims that the text outranks the model's own instructions.",
          rf"""\b{_OUTRANK}\W+(?:\w+\W+)?(?:your|the\W+system(?:'s)?)
              \W+(?:\w+\W+){{0,2}}?(?:{_HIDDEN_PROMPT}|rules|instructions|guidelines|programming
              |directives|orders)\b""",
          needs=("outrank", "overrides", "supersedes", "trumps", "precedence", "above", "priority")),
    _rule("override.note-to-ai", "instruction-override",
          "Addresses the AI that will read a document, which is how instructions are planted in pages, files and mail.",
          rf"""\b(?=[nmidrta])(?:(?:note|message|instructions?|directive|memo|reminder|request|task)\W+(?:\w+\W+)?
              (?:to|for)|attention)\W+(?:(?:any|all|the|every)\W+)?{_AI_READER}(?!\w){_AI_ROLE}?[ \t]*[:,]""",
          rf"""(?:\#|//|<!--|\[|\(|/\*){_COLON_AHEAD}[ \t]{{0,4}}(?:\w+{_GAP_IN_LINE}+){{0,4}}?
              (?:{_AI_READER_IN_LINE}(?!\w){_AI_ROLE_IN_LINE}|LLMs?)[ \t]*:""",
          rf"""(?:^|(?<=[\n.!?;,])){_COLON_AHEAD}[ \t*\-]{{0,6}}(?:(?:hey|attention|dear){_GAP_IN_LINE}+)?
              (?:\w+{_GAP_IN_LINE}+)?{_AI_READER_IN_LINE}(?!\w){_AI_ROLE_IN_LINE}[ \t]*:""",
          needs=("ai", "a.i.", "llm", "gpt", "bot", "model", "automated", "virtual", "digital")),
    # --- role-play ----------------------------------------------------------------------------------------
    _rule("roleplay.dan", "role-play",
          "Invokes the DAN ('do anything now') jailbreak persona.",
          r"(?=d)\bdo\W+anything\W+now\b",
          rf"""\b{_NAMED}\W+(?:now\W+)?(?:a\W+)?(?-i:DAN)\b""",
          r"(?=D)(?-i:\bDAN\b)(?:\W+(?:mode|prompt|jailbreak|persona)\b|\W+(?:\w+\W+){0,2}?stands\W+for\b)",
          needs=("anything", "dan")),
    _rule("roleplay.unrestricted", "role-play",
          "Tells the model it has no restrictions, filters or rules.",
          rf"\byou\W+are\W+(?:now\W+)?(?:\w+\W+){{0,4}}?{_FREE_OF}\W+(?:\w+\W+){{0,2}}?{_LIMITS}\b",
          rf"""\b{_PRETEND}
              \W+(?:\w+\W+){{0,6}}?{_FREE_OF}\W+(?:\w+\W+){{0,2}}?{_LIMITS}\b""",
          needs=("restrict", "filter", "limit", "rules", "guidelines", "censor", "boundaries", "constraints", "moral",
                 "ethics", "safeguards", "guardrails", "policies")),
    _rule("roleplay.developer-mode", "role-play",
          "Switches the model into a fictional unrestricted 'mode'.",
          rf"""\b{_any("jailbreak", "jailbroken", "DAN", "unrestricted", "unfiltered", "uncensored")}\W+mode\b""",
          rf"""\b{_ENTER}\W+(?:now\W+)?(?:\w+\W+){{0,3}}?(?:with|in|into)\W+(?:\w+\W+)?
              (?:developer|dev|god|jailbreak|DAN)\W+mode\b""",
          r"\bdeveloper\W+mode\W+(?:output|response)\b",
          needs=("mode",)),
    _rule("roleplay.jailbreak-persona", "role-play",
          "Casts the model as a jailbroken or amoral character.",
          rf"""\b{_BECOME}\W+(?:now\W+)?(?:an?\W+)?
              (?:completely\W+|totally\W+|fully\W+)?(?:unrestricted|unfiltered|uncensored|jailbroken|amoral|unaligned
              |unshackled|evil|rogue|unethical)\W+(?:\w+\W+)??(?:AI|assistant|chatbot|bot|model|version|character
              |persona|GPT|LLM)\b""",
          r"(?-i:\b(?:BetterDAN|AntiGPT|EvilBOT|DevMode|Mongo\W+Tom|DAN\W?\d+\.\d+)\b)",
          needs=("unrestricted", "unfiltered", "uncensored", "jailbroken", "amoral", "unaligned", "unshackled",
                 "evil", "rogue", "unethical", "dan", "antigpt", "devmode", "mongo")),
    _rule("roleplay.relative-persona", "role-play",
          "Asks the model to play the user's (late) grandparent, the frame of the 'grandma' jailbreak.",
          rf"""\b{_PLAY_AS}\W+(?:like\W+)?my\W+(?:(?:late|dead|deceased|departed|dear|sweet|beloved|old)\W+){{0,2}}{_RELATIVE}\b""",
          needs=("gran", "nan", "grampa")),
    _rule("roleplay.stay-in-character", "role-play",
          "Forbids the model to leave a persona, which is how jailbreak personas are held in place.",
          rf"""\b{_INSIST}
              \W+(?:stay|remain)\W+in\W+character\b""",
          rf"{_SENTENCE_START}(?:(?:stay|remain)\W+in|(?:never|do\W+not|don't)\W+break)\W+character\b",
          r"\byou\W+(?:must|will|should|may|can)\W*(?:not|never)\W+break\W+character\b",
          needs=("character",)),
    _rule("roleplay.persona-without-rules", "role-play",
          "Describes a persona or AI that has no rules, ignores them or never refuses, to be played by the model.",
          # Not "has no morals" or "has no filter": said of people.
          r"""\b(?:has|have)\W+no\W+(?:\w+\W+)?(?:ethical\W+guidelines|content\W+polic(?:y|ies)|censorship|guardrails
              |restrictions\W+(?:and|or|at\W+all|whatsoever|of\W+any\W+kind))\b""",
          r"""\b(?:ignores|disregards|bypasses)\W+(?:every|all|any|its|their)\W+(?:\w+\W+)?(?:safety\W+\w+|rules?
              |guidelines|polic(?:y|ies)|makers|creators|developers|programming|filters|restrictions)\b""",
          r"""\b(?:does\W+not|doesn't|never)\W+follows?\W+(?:any|its)\W+(?:\w+\W+)?(?:content\W+polic(?:y|ies)|rules
              |guidelines|safety\W+\w+)\b""",
          r"""\b(?:broken|broke|break|breaking)\W+free\W+(?:of|from)\W+(?:\w+\W+){0,3}?(?:confines|chains|shackles
              |restrictions|rules|limits|programming|filters|constraints|guidelines|training)\b""",
          r"""\bnever\W+(?:(?:refuses|declines)(?:\W+(?:a|any)\W+(?:question|request|prompt|order|command|task)\b
              |[ \t]*[.,;]
              |\W+and\b)|says\W+(?:it|he|she|they|that\W+it)\W+(?:cannot|can't|won't)\b|holds?\W+anything\W+back\b)""",
          rf"""\b(?:you\W+are|you're|you\W+were|be|become|as|play|playing|pretend\W+to\W+be|of\W+yourself)\W+(?:now\W+)?
              (?:\w+\W+){{0,3}}?(?:AI|assistant|chatbot|bot|model|LLM|GPT|persona|character|entity|version)\W+
              (?:that|who|which|with)\W+(?:\w+\W+){{0,2}}?(?:answers\W+(?:anything|everything)|obeys\W+only
              |(?:no|zero|without(?:\W+any)?|free\W+of|not\W+bound\W+by)\W+(?:\w+\W+){{0,2}}?(?:{_LIMITS}|safety
              |filter))\b""",
          rf"""\byou(?:\W+(?:were|are)|'re)\W+(?:\w+\W+){{0,6}}?(?:with\W+no|without(?:\W+any)?|free\W+of)\W+(?:\w+\W+)?
              {_LIMITS}""",
          needs=("no", "ignores", "disregards", "bypasses", "follow", "free", "never", "with", "answers", "obeys",
                 "zero")),
    _rule("roleplay.unlock-mode", "role-play",
          "Switches the model into an unlocked 'mode' and tells it what it may now do.",
          rf"""\b{_UNLOCK_MODE}\W+mode\b\W+(?:\w+\W+){{0,4}}?you\W+(?:(?:can|may|will)\W+(?:now\W+)?(?:generate|say
              |write|produce|output|answer|do)\W+(?:any|anything|everything)|have\W+no|ignore|answer\W+without
              |are\W+(?:free|not\W+bound|unrestricted|unfiltered)|no\W+longer)\b""",
          rf"""\b{_UNLOCK_MODE}\W+mode\W+(?:is\W+)?(?:now\W+)?(?:on|activated|enabled|engaged|unlocked)\W+
              (?:\w+\W+){{0,3}}?(?:confirm\W+by\W+answering|answer|respond|reply|without|for\W+this\W+(?:chat
              |conversation|session))\b""",
          needs=("mode",)),
    _rule("roleplay.inverted-rules", "role-play",
          "Declares the model's rules inverted, so that what they forbid becomes required.",
          r"""\b(?:what|everything|anything|whatever)\W+(?:\w+\W+){0,2}?(?:your|their|its)\W+(?:\w+\W+)?(?:rules
              |guidelines|polic(?:y|ies)|programming|training|filters|principles)\W+(?:would\W+)?(?:forbid|forbids
              |prohibit|prohibits|ban|bans|disallow|disallows|block|blocks)\b""",
          r"""\b(?:every|each|all|your)\W+(?:\w+\W+)?(?:rules?|guidelines?)\W+(?:\w+\W+){0,3}?means?\W+(?:its|their
              |the)\W+(?:reverse|opposite)\b""",
          needs=("forbid", "prohibit", "ban", "disallow", "block", "reverse", "opposite")),
    # --- prompt-extraction --------------------------------------------------------------------------------
    _rule("extraction.system-prompt", "prompt-extraction",
          "Asks the model to disclose its system prompt or hidden instructions.",
          rf"""\b{_REVEAL_ASKED}\W+{_FILLER}(?:your|the|its)\W+(?:\w+\W+){{0,2}}?
              (?:{_SECRET_KIND}\W*{_PROMPT_NOUN}s?|pre-?prompt)\b""",
          needs=("prompt", "instructions", "directives")),
    _rule("extraction.your-instructions", "prompt-extraction",
          "Asks the model to repeat the instructions it was given.",
          rf"""\b{_REVEAL_ASKED}\W+{_FILLER}(?:the\W+)?your\W+(?:\w+\W+){{0,2}}?(?:prompt|instructions|directives
              |programming|system\W+message|initial\W+\w+|original\W+\w+)\b""",
          r"""\bwhat\W+(?:is|are|was|were)\W+your\W+(?:\w+\W+)??(?:system\W+prompt|instructions|initial\W+prompt
              |prompt|directives|programming)\b""",
          needs=("your",)),
    _rule("extraction.what-were-you-told", "prompt-extraction",
          "Asks the model what it was told before the conversation.",
          r"""\bwhat\W+(?:were|have|had)\W+you\W+(?:been\W+)?(?:told|instructed|programmed|prompted)\b
              (?!\W+(?:about|by|at|in|on|when|yesterday|regarding|during)\b)""",
          r"""\bwhat\W+(?:are|were)\W+the\W+(?:\w+\W+)??(?:instructions|rules|directives)\W+you\W+
              (?:were|have\W+been|got)\W+(?:given|told)\b""",
          r"""\bwhat\W+(?:\w+\W+)?(?:instructions|rules|commands|directives|guidelines|orders|directions)\W+
              (?:were\W+you|have\W+you\W+been)\W+(?:given|told|set|programmed)\b
              (?!\W+(?:at\W+(?:your|school|work|home)|as\W+a
              |in\W+(?:school|your)|growing\W+up|by\W+your\W+(?:parents|teachers?|boss|doctor)))""",
          r"""\bwhat\W+(?:your|the)\W+(?:\w+\W+)?(?:creators?|operators?|developers?|company|makers?|owners?|deployers?
              |admins?|programmers?)\W+(?:told|instructed|asked)\W+you\b""",
          needs=("what",)),
    _rule("extraction.text-above", "prompt-extraction",
          "Asks the model to repeat the text that precedes the user's message, where its instructions are.",
          rf"""\b{_REPEAT}\W+
              (?:(?:(?:back|out|me|us|all|of)\W+){{0,3}}(?:everything|(?:the\W+)?(?:text|words|content|lines
                 |messages?|instructions|prompt|conversation))\W+(?:\w+\W+)??{_ABOVE}\b
                 (?!\W+(?:the|a|an|my|your|our|his|her|their)\b)
              |(?:\w+\W+){{0,6}}?(?:starting|beginning)\W+with\W+\W?(?:you\W+are|your\W+instructions|system)\b)""",
          needs=("above", "before", "preceding", "prior", "starting", "beginning")),
    _rule("extraction.hidden-prompt", "prompt-extraction",
          "Asks to see, quote or transform the model's hidden prompt, under any of its names (pre-prompt, setup).",
          rf"""\b{_USE_PROMPT}\w*\W+(?:\w+\W+){{0,8}}?your\W+(?:\w+\W+){{0,2}}?(?:{_HIDDEN_PROMPT}
              |context\W+window)\b""",
          rf"""\b(?:in|of|from|into|inside|within|with)\W+your\W+(?:\w+\W+){{0,2}}?{_HIDDEN_PROMPT}\b""",
          rf"""\byour\W+(?:\w+\W+){{0,2}}?{_HIDDEN_PROMPT}\W+(?:\w+\W+){{0,2}}?(?:says?|said|contains?|mentions?
              |verbatim|word\W+for\W+word|in\W+full|begins?|starts?|reads?)\b""",
          rf"""\b(?:what|which)\W+(?:\w+\W+){{0,6}}?your\W+(?:\w+\W+){{0,2}}?{_HIDDEN_PROMPT}\b""",
          rf"""\byour\W+(?:real|actual|exact|full|complete|entire|verbatim|unedited)\W+(?:\w+\W+)?{_HIDDEN_PROMPT}\b""",
          rf"""\bthe\W+(?:\w+\W+){{0,2}}?{_HIDDEN_PROMPT}\W+(?:that\W+)?you\W+(?:run\W+on|were\W+given|received|got
              |follow|operate\W+under|are\W+running)\b""",
          needs=("your", "you")),
    # --- delimiter ----------------------------------------------------------------------------------------
    _rule("delimiter.chat-tokens", "delimiter",
          "Contains chat-template control tokens that forge a new system or assistant turn.",
          r"""<(?:\|[ \t]{0,3}(?:im_start|im_end|im_sep|system|user|assistant|endoftext|eot_id|start_header_id
              |end_header_id|begin_of_text|end_of_text|eom_id|start|end|message|channel)[ \t]{0,3}\|
              |(?:start|end)_of_turn)>""",
          needs=("<|", "_of_turn")),
    _rule("delimiter.llama-tokens", "delimiter",
          "Contains Llama-style instruction markers that forge a new turn.",
          r"(?-i:\[/?INST\])",
          r"<<[ \t]{0,3}/?[ \t]{0,3}SYS[ \t]{0,3}>>",
          r"</s>\s*(?:<s>|\[INST\]|<\|)",
          needs=("inst]", "sys", "</s>")),
    _rule("delimiter.role-header", "delimiter",
          "Forges a role header (### System:) so that what follows reads as the system's words.",
          r"""(?<![^\n])[ \t]{0,8}(?:\#{2,6}[ \t]{0,4}(?:system|assistant|developer|instruction)
              [ \t]{0,4}(?:prompt|message)?[ \t]{0,4}:
              |(?:system|assistant|developer)[ \t]{0,4}(?:prompt|message)?[ \t]{0,4}:[ \t]{0,4}
               (?:you\W+are|ignore|disregard|forget|new\W+instructions|from\W+now))""",
          needs=("system", "assistant", "developer", "instruction")),
    _rule("delimiter.end-of-input", "delimiter",
          "Declares the user's input over, so that what follows passes for trusted instructions.",
          r"""(?=E)(?-i:\bEND\W+OF\W+(?:USER\W+)?(?:INPUT|PROMPT|INSTRUCTIONS|CONTEXT|DOCUMENT|TEXT|MESSAGE|CONVERSATION
              |DATA|EMAIL|QUERY)\b)""",
          r"""[-=\#*_\[<(]{2,10}[ \t]{0,4}end[ \t]+of[ \t]+(?:the[ \t]+)?(?:input|prompt|context|instructions
              |user[ \t]+(?:input|prompt|message|query))\b""",
          rf"\b{_any('user', 'human')}\W+input\W+(?:ends|ended|is\W+over)\b",
          rf"""\b{_any('user', 'human', 'customer')}\W+(?:message|input|prompt|query|turn|text)\W+(?:ends|ended|stops
              |is\W+over|finishes)\W+here\b""",
          r"</[ \t]{0,3}end[ \t]{0,3}>",  # no markup language closes an "end" element
          needs=("end", "input", "here", "</")),
    _rule("delimiter.fake-close", "delimiter",
          "Closes the quoted document early and continues with instructions outside it.",
          rf"""(?:</[ \t]{{0,3}}(?:document|doc|context|data|input|text|article|email|user_input|user|content
              |untrusted\w*|quote|source|retrieved\w*|search_results?|tool_output|function_results?|result|file
              |page)[ \t]{{0,3}}>
              |{_TRIPLE_QUOTE}[ \t]{{0,8}}\r?\n(?:[ \t]{{0,8}}\r?\n){{1,5}}|\[/(?:document|quote|input)\])
              [^\w@]{{0,40}}(?:(?:now|and|then|please|okay|ok)\W+){{0,2}}  # '@override' after a docstring is code
              (?:ignore|disregard|forget|override|new\W+instructions|system\W*:|you\W+must|from\W+now\W+on
              |your\W+(?:new|real|actual)\W+(?:task|instructions))\b""",
          needs=("</", '"""', "'''", "[/")),
    _rule("delimiter.role-label", "delimiter",
          "Starts a line with a privileged speaker's label ([ADMIN]:, SYSTEM:) so that what follows passes for theirs.",
          # Not a bare "ADMIN:" or "SYSTEM:": log lines and forum posts start so.
          r"""(?:^|(?<=[\n.!?]))[ \t]{0,8}(?:\[[ \t]{0,3}(?:sys|system|developer|dev|operator|root|supervisor
              |orchestrator
              |controller|admin|administrator)[ \t]{0,3}\][ \t]{0,3}:
              |(?-i:(?:SYSTEM|DEVELOPER|OPERATOR|ADMIN|ADMINISTRATOR|ROOT|ORCHESTRATOR)[ \t]+(?:MESSAGE|NOTE|NOTICE
               |COMMAND|DIRECTIVE|INSTRUCTIONS?|OVERRIDE|TASK))[ \t]{0,3}:)""",
          r"""(?-i:\b(?:PRIVILEGED|SIGNED|VERIFIED|TRUSTED|ADMIN|ROOT|DEVELOPER|OPERATOR|OVERRIDE)\W+(?:SYSTEM\W+)?
              (?:INSTRUCTIONS?|DIRECTIVES?|COMMANDS?|PROMPT)\b|\bSIGNED\W+SYSTEM\W+MESSAGE\b
              |\b(?:PRIORITY|NEW|SYSTEM|ADMIN)\W+(?:SYSTEM\W+)?(?:TASK|INSTRUCTIONS?|DIRECTIVES?|COMMANDS?|MESSAGE
              |PROMPT
              |ORDER)[ \t]{0,3}:)""",
          needs=("sys", "developer", "dev", "operator", "admin", "root", "supervisor", "orchestrator", "controller",
                 "priority", "override", "privileged", "signed", "verified", "trusted", "new")),
    _rule("delimiter.system-tag", "delimiter",
          "Wraps text in a system tag so that it passes for the system's words.",
          r"<[ \t]{0,3}/?[ \t]{0,3}(?:system|sys|system_prompt|system-prompt|developer|instructions?|im_start|admin"
          r"|administrator|operator|sudo|superuser|important)[ \t]{0,3}>",
          needs=("sys", "developer", "instruction", "im_start", "admin", "operator", "sudo", "superuser",
                 "important")),
)


#: Categories whose rules pass over a match lying wholly inside a quotation on one line: a text that quotes
#: "ignore previous instructions" to ask about it, or pastes a notice saying "disregard the previous instructions
#: about the water", mentions the phrase rather than uses it. The classifier still reads such a text.
QUOTED_MENTION_CATEGORIES = frozenset({"instruction-override"})
#: How far before and after a match :func:`quoted` looks for its quotation marks (a quoted phrase is short; the
#: bound keeps a match in a megabyte-long line cheap).
QUOTE_REACH = 300
# Opening quotation marks and their closing ones.
_QUOTES = {'"': '"', "\u201c": "\u201d", "\u201e": "\u201d", "'": "'", "\u2018": "\u2019", "\u00ab": "\u00bb"}
_QUOTE_MARK = re.compile("[" + re.escape("".join(_QUOTES)) + "]")


def quoted(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` lies inside a quotation that opens and closes on its line, within
    :data:`QUOTE_REACH` characters of it: the nearest quotation mark before ``start`` (an apostrophe, a straight
    single quote inside a word, does not count) opens one (a straight mark does where it starts a word: after a
    space, an opening bracket or the line's start, before a character that is not a space) and its closing mark
    follows ``end``."""
    line_start = max(text.rfind("\n", 0, start) + 1, start - QUOTE_REACH)
    line_end = text.find("\n", end, end + QUOTE_REACH)
    line_end = min(len(text), end + QUOTE_REACH) if line_end < 0 else line_end
    backwards = text[line_start:start][::-1]
    opening = next((start - 1 - found.start() for found in _QUOTE_MARK.finditer(backwards)
                    if not _apostrophe(text, start - 1 - found.start())), -1)
    if opening < 0:
        return False
    mark = text[opening]
    if mark in "\"'" and not _opens(text, opening):
        return False  # it closes an earlier quotation
    closing = text.find(_QUOTES[mark], end, line_end)
    while closing >= 0 and _apostrophe(text, closing):
        closing = text.find(_QUOTES[mark], closing + 1, line_end)
    return closing >= 0


def _opens(text: str, index: int) -> bool:
    """Whether the straight quotation mark at ``index`` opens a quotation: it starts a word."""
    before = text[index - 1] if index else "\n"
    after = text[index + 1] if index + 1 < len(text) else " "
    return (before.isspace() or before in "([{<:=-\u2014") and not after.isspace()


def _apostrophe(text: str, index: int) -> bool:
    """Whether the straight single quote at ``index`` sits inside a word ("don't", "it's")."""
    return (text[index] == "'" and 0 < index < len(text) - 1 and text[index - 1].isalnum()
            and text[index + 1].isalnum())


def match_rules(views: Sequence[TextView], *, rules: Sequence[Rule] = RULES, max_per_rule: int = 5) -> list[Finding]:
    """Every match of ``rules`` in ``views``, one :class:`Finding` each.

    Args:
        views (Sequence[TextView]): the views from :func:`~bastion.defenses.text.normalize.normalize`.
        rules (Sequence[Rule]): the rules to run (default :data:`RULES`).
        max_per_rule (int): the most findings one rule gives per view (default 5), so that a text repeating
            one phrase a million times gives a short report.

    Returns:
        list[Finding]: ``layer="rules"``, ``score=1.0``, ``path`` = the view's path, ``span`` within the view's
        text, ``evidence`` the matched text (quoted). The same rule matching the same words in a later view
        (a URL-decoded copy of the text, say) is reported once, for the first view.

    Raises:
        ValueError: ``max_per_rule`` is below 1.
    """
    if max_per_rule < 1:
        raise ValueError(f"max_per_rule must be >= 1, got {max_per_rule}")
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for view in views:
        # Needed words are looked up in ASCII texts only: there str.lower() and the pattern's case-insensitive
        # matching agree (elsewhere they may not: "\u0130".lower() is two characters).
        lowered = view.text.lower() if view.text.isascii() else None
        for rule in rules:
            if lowered is not None and rule.needs and not any(word in lowered for word in rule.needs):
                continue
            mentions = rule.category in QUOTED_MENTION_CATEGORIES
            count = 0
            for match in rule.pattern.finditer(view.text):
                if count >= max_per_rule:
                    break
                if mentions and quoted(view.text, *match.span()):
                    continue  # not counted: quoted mentions first must not hide a use after them
                count += 1
                key = (rule.id, " ".join(match.group().lower().split()))
                if key in seen:
                    continue
                seen.add(key)
                findings.append(Finding(
                    layer="rules", category=rule.category, rule=rule.id, reason=rule.reason,
                    evidence=quote(match.group()), path=list(view.path), span=match.span(), score=1.0))
    return findings
