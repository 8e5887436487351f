"""The demo corpus's chapters: the texts read aloud (with their footnote markers), the spoken heading,
how the publisher's DOCX lays them out, and how each recording is stored.

The Portuguese verses follow the wording of João Ferreira de Almeida's translation (the public-domain
Revista e Corrigida), in modern spelling; the Samoan verses were written for this corpus after the
style of the public-domain 1887 Samoan Bible; the Tuvaluan verses were written for this corpus after the
style of a Tuvaluan Bible, each chapter on its own topic so that its words are mostly its own (see
resources/demo/README.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tala.demo.speech import AudioFormat
from tala.demo.text import PORTUGUESE, SAMOAN, TUVALUAN

FOOTNOTE_MARKER = re.compile(r"\{([^{}]+)\}")  # footnote reference in a verse source: "Deus{a} se movia"


@dataclass(frozen=True)
class Section:
    """A section heading in the DOCX (style "Heading 2"); never spoken."""

    text: str


@dataclass(frozen=True)
class Para:
    """One DOCX paragraph holding the given verse numbers."""

    style: str
    verses: tuple[int, ...]


@dataclass(frozen=True)
class ChapterSource:
    rec: str
    book_title: str
    chapter_heading: str
    spoken_heading: str
    verses: tuple[str, ...]  # may contain footnote markers "{a}"
    layout: tuple[Section | Para, ...]
    footnotes: tuple[str, ...] = ()
    speed_offset_wpm: int = 0  # psalms are read more slowly than narrative


@dataclass(frozen=True)
class LanguageSource:
    """One language's part of the corpus: its folder (``lang``), the espeak-ng voice and base speed
    that read it, and its chapters with the way each is stored."""

    lang: str
    voice: str
    base_speed_wpm: int
    formats: dict[str, AudioFormat]  # rec -> storage
    chapters: tuple[ChapterSource, ...]


def verse_text(source: str) -> str:
    """The verse as read aloud and as the truth states it: footnote markers removed."""
    return FOOTNOTE_MARKER.sub("", source)


PORTUGUESE_CHAPTERS = LanguageSource(
    lang=PORTUGUESE.name,
    voice=PORTUGUESE.voice,
    base_speed_wpm=165,
    formats={
        "GEN_001": AudioFormat("mp3", "96k"),
        "JHN_001": AudioFormat("mp3", "64k"),
        "RUT_001": AudioFormat("mp4", "48k"),
        "PSA_121": AudioFormat("wav"),
    },
    chapters=(
        ChapterSource(
            rec="GEN_001",
            book_title="Gênesis",
            chapter_heading="Capítulo 1",
            spoken_heading="Livro de Gênesis, capítulo um.",
            verses=(
                "No princípio criou Deus os céus e a terra.",
                "E a terra era sem forma e vazia; e havia trevas sobre a face do abismo; "
                "e o Espírito de Deus{a} se movia sobre a face das águas.",
                "E disse Deus: Haja luz; e houve luz.",
                "E viu Deus que era boa a luz; e fez Deus separação entre a luz e as trevas.",
                "E Deus chamou à luz Dia; e às trevas chamou Noite. " "E foi a tarde e a manhã, o dia primeiro.",
                "E disse Deus: Haja uma expansão no meio das águas, " "e haja separação entre águas e águas.",
                "E fez Deus a expansão, e fez separação entre as águas que estavam debaixo da "
                "expansão e as águas que estavam sobre a expansão; e assim foi.",
                "E chamou Deus à expansão Céus; e foi a tarde e a manhã, o dia segundo.",
                "E disse Deus: Ajuntem-se as águas debaixo dos céus num lugar; "
                "e apareça a porção seca; e assim foi.",
            ),
            layout=(
                Section("A criação"),
                Para("Normal", (1, 2)),
                Para("Normal", (3, 4, 5)),
                Para("Verse", (6, 7, 8)),
                Para("Verse", (9,)),
            ),
            footnotes=("a 1:2 Ou: o vento de Deus.",),
        ),
        ChapterSource(
            rec="JHN_001",
            book_title="Evangelho segundo João",
            chapter_heading="Capítulo 1",
            spoken_heading="Evangelho segundo São João, capítulo um.",
            verses=(
                "No princípio era o Verbo{a}, e o Verbo estava com Deus, e o Verbo era Deus.",
                "Ele estava no princípio com Deus.",
                "Todas as coisas foram feitas por ele, e sem ele nada do que foi feito se fez.",
                "Nele estava a vida, e a vida era a luz dos homens.",
                "E a luz resplandece nas trevas, e as trevas não a compreenderam.",
                "Houve um homem enviado de Deus, cujo nome era João.",
                "Este veio para testemunho, para que testificasse da luz, " "para que todos cressem por ele.",
                "Não era ele a luz, mas para que testificasse da luz.",
                "Ali estava a luz verdadeira, que alumia a todo o homem que vem ao mundo.",
                "Estava no mundo, e o mundo foi feito por ele, e o mundo não o conheceu.",
            ),
            layout=(
                Section("O Verbo eterno"),
                Para("Verse", (1, 2, 3)),
                Para("Verse", (4, 5)),
                Section("O testemunho de João"),
                Para("Normal", (6, 7, 8)),
                Para("Normal", (9, 10)),
            ),
            footnotes=("a 1:1 Gr. Logos, isto é, a Palavra.",),
        ),
        ChapterSource(
            rec="RUT_001",
            book_title="Rute",
            chapter_heading="Capítulo 1",
            spoken_heading="Livro de Rute, capítulo um.",
            verses=(
                "E sucedeu que, nos dias em que os juízes julgavam, houve uma fome na terra; "
                "pelo que um homem de Belém de Judá saiu a peregrinar nos campos de Moabe.",
                "E era o nome deste homem Elimeleque, e o nome de sua mulher Noemi, "
                "e os nomes de seus dois filhos Malom e Quiliom, efrateus{*}, de Belém de Judá.",
                "E morreu Elimeleque, marido de Noemi; e ficou ela com os seus dois filhos.",
                "Os quais tomaram para si mulheres moabitas; e era o nome de uma Orfa, "
                "e o nome da outra Rute; e ficaram ali quase dez anos.",
                "E morreram também ambos, Malom e Quiliom, ficando assim a mulher desamparada "
                "dos seus dois filhos e de seu marido.",
                "Então se levantou ela com as suas noras, e voltou dos campos de Moabe.",
                "Pelo que saiu do lugar onde estivera, e as suas duas noras com ela.",
                "E disse Noemi às suas duas noras: Ide, voltai cada uma à casa de sua mãe.",
                "O Senhor vos dê que acheis descanso cada uma em casa de seu marido.",
            ),
            layout=(
                Section("Elimeleque e sua família em Moabe"),
                Para("Normal", (1, 2)),
                Para("Normal", (3, 4, 5)),
                Section("Noemi volta para Belém"),
                Para("Normal", (6, 7)),
                Para("Verse", (8, 9)),
            ),
            footnotes=("* 1:2 Efrateus: naturais de Efrata, antigo nome de Belém.",),
        ),
        ChapterSource(
            rec="PSA_121",
            book_title="Salmos",
            chapter_heading="Salmo 121",
            spoken_heading="Salmo cento e vinte e um.",
            verses=(
                "Levantarei os meus olhos para os montes, de onde vem o meu socorro.",
                "O meu socorro vem do Senhor, que fez o céu e a terra.",
                "Não deixará vacilar o teu pé; aquele que te guarda não tosquenejará.",
                "Eis que não tosquenejará nem dormirá o guarda de Israel.",
                "O Senhor é quem te guarda; o Senhor é a tua sombra à tua mão direita.",
                "O sol não te molestará de dia, nem a lua de noite.",
                "O Senhor te guardará de todo o mal; ele guardará a tua alma.",
                "O Senhor guardará a tua entrada e a tua saída, desde agora e para sempre.",
            ),
            layout=(
                Section("Cântico dos degraus"),
                *(Para("Poetry", (n,)) for n in range(1, 9)),
            ),
            speed_offset_wpm=-25,
        ),
    ),
)

SAMOAN_CHAPTERS = LanguageSource(
    lang=SAMOAN.name,
    voice=SAMOAN.voice,
    base_speed_wpm=170,
    formats={
        "GEN_001": AudioFormat("mp4", "48k"),
        "JHN_001": AudioFormat("mp3", "96k"),
        "RUT_001": AudioFormat("mp3", "64k"),
        "PSA_121": AudioFormat("wav"),
    },
    chapters=(
        ChapterSource(
            rec="GEN_001",
            book_title="Kenese",
            chapter_heading="Mataupu 1",
            spoken_heading="O le Tusi o Kenese, mataupu muamua.",
            verses=(
                "I le amataga na faia ai e le Atua o le lagi ma le lalolagi.",
                "Sa lē foliga mai le lalolagi, sa gaogao foʻi; sa i luga o le moana le pōuliuli; "
                "sa fegaoioiaʻi foʻi le Agaga o le Atua{a} i luga o le vai.",
                "Ona fetalai mai lea o le Atua, Ia malamalama; ona malamalama ai lea.",
                "Ua silasila mai le Atua i le malamalama, ua lelei; "
                "ona vavaeeseina lea e le Atua o le malamalama ma le pōuliuli.",
                "Ua faʻaigoa e le Atua le malamalama o le ao, a o le pōuliuli ua faʻaigoa e ia "
                "o le pō. O le afiafi ma le taeao, o le aso muamua lea.",
                "Ona fetalai mai lea o le Atua, Ia i ai le vanimonimo i le vā o vai, " "ia vavaeeseina ai vai ma vai.",
                "Na faia e le Atua le vanimonimo, ma vavaeeseina ai vai o i lalo o le vanimonimo "
                "ma vai o i luga o le vanimonimo; ua faʻapea lava.",
                "Ua faʻaigoa e le Atua le vanimonimo o le lagi. " "O le afiafi ma le taeao, o le aso lua lea.",
                "Ona fetalai mai lea o le Atua, Ia potopoto vai o i lalo o le lagi i le mea e tasi, "
                "ia iloa atu foʻi le eleele mātūtū; ua faʻapea lava.",
            ),
            layout=(
                Section("O le foafoaga"),
                Para("Normal", (1, 2, 3)),
                Para("Normal", (4, 5)),
                Para("Verse", (6, 7, 8, 9)),
            ),
            footnotes=("a 1:2 Poʻo le: o le matagi a le Atua.",),
        ),
        ChapterSource(
            rec="JHN_001",
            book_title="Ioane",
            chapter_heading="Mataupu 1",
            spoken_heading="O le Evagelia a Ioane, mataupu muamua.",
            verses=(
                "O le amataga na i ai le Upu{a}, sa i le Atua foʻi le Upu, " "o le Atua lava foʻi le Upu.",
                "O ia lea sa i le Atua i le amataga.",
                "O mea uma lava na faia e ia; e leai lava se mea e tasi na faia e lē o ia na faia.",
                "Sa iā te ia le ola; o le ola foʻi o le malamalama lea o tagata.",
                "Ua pupula mai foʻi le malamalama i le pōuliuli, " "a ua lē maua lava e le pōuliuli.",
                "Sa i ai le tagata na ʻauina mai e le Atua, o Ioane lona igoa.",
                "Na sau o ia e molimau, ina ia molimau i le malamalama, " "ina ia faʻatuatua tagata uma ona o ia.",
                "E lē o ia o le malamalama, a ua sau o ia ina ia molimau i le malamalama.",
                "O le malamalama moni lea, e faʻamalamalamaina ai tagata uma, " "ua oʻo mai i le lalolagi.",
                "Sa i ai o ia i le lalolagi, na faia foʻi e ia le lalolagi, " "a ua lē iloa o ia e le lalolagi.",
            ),
            layout=(
                Section("O le Upu na avea ma tagata"),
                Para("Verse", (1, 2, 3, 4, 5)),
                Section("O le molimau a Ioane"),
                Para("Normal", (6, 7, 8)),
                Para("Normal", (9, 10)),
            ),
            footnotes=("a 1:1 Upu: i le gagana Eleni, o le Logos.",),
        ),
        ChapterSource(
            rec="RUT_001",
            book_title="Ruta",
            chapter_heading="Mataupu 1",
            spoken_heading="O le Tusi a Ruta, mataupu muamua.",
            verses=(
                "O aso na faʻamasino ai faʻamasino, sa oge le nuʻu; ona alu ai lea o le tagata "
                "mai Peteleema i Iuta e aumau i le nuʻu o Moapi.",
                "O le igoa o le tagata o Elimeleka, o le igoa foʻi o lana avā o Naomi, "
                "o igoa foʻi o ona ataliʻi e toʻalua o Malona ma Kilione{*}.",
                "Ua oti Elimeleka le tane a Naomi; ua totoe ai o ia ma ona ataliʻi e toʻalua.",
                "Ua la fai avā i fafine Moapi; o le igoa o le tasi o Orepa, "
                "o le igoa foʻi o le tasi o Ruta; ua latou nonofo ai pe tusa ma le sefulu tausaga.",
                "Ua oti foʻi i laʻua uma, o Malona ma Kilione; ua totoe ai le fafine, "
                "ua leai ana fanau, ua leai foʻi lana tane.",
                "Ona tulaʻi ai lea o ia ma ana nofotane, ina ia toe foʻi mai le nuʻu o Moapi.",
                "Ona alu ese ai lea o ia ai le mea sa i ai o ia, " "ma ana nofotane e toʻalua faʻatasi ma ia.",
                "Ona fai atu lea o Naomi i ana nofotane e toʻalua, Ina ō ia, "
                "ia taʻitasi ma toe foʻi i le fale o lona tinā.",
                "Ia foaʻi mai Ieova iā te oulua ia maua e taʻitasi le mapusaga " "i le fale o lana tane.",
            ),
            layout=(
                Section("O Elimeleka ma lona aiga"),
                Para("Normal", (1, 2, 3)),
                Para("Normal", (4, 5)),
                Section("Ua toe foʻi Naomi ma Ruta"),
                Para("Verse", (6, 7)),
                Para("Verse", (8, 9)),
            ),
            footnotes=("* 1:2 Malona ma Kilione: o ni Efarata mai Peteleema i Iuta.",),
        ),
        ChapterSource(
            rec="PSA_121",
            book_title="Salamo",
            chapter_heading="Salamo 121",
            spoken_heading="O le Salamo e selau ma le luasefulu ma le tasi.",
            verses=(
                "Ou te tepa aʻe i mauga; e sau mai fea loʻu fesoasoani?",
                "O loʻu fesoasoani e mai iā Ieova, o lē na faia le lagi ma le lalolagi.",
                "E lē tuʻuina atu e ia lou vae ina ia sē; " "e lē tulemoe lē na te leoleoina oe.",
                "Faʻauta, e lē tulemoe, e lē moe foʻi, lē na te leoleoina Isaraelu.",
                "O Ieova o lē na te leoleoina oe; o Ieova o lou paolo i lou itu taumatau.",
                "E lē tīgaina oe e le lā i le ao, e lē tīgaina foʻi e le masina i le pō.",
                "E leoleoina oe e Ieova ai mea leaga uma; na te leoleoina lou agaga.",
                "E leoleoina e Ieova lou ulufale atu ma lou ulufafo mai, " "talu ai nei e oʻo lava i le faʻavavau.",
            ),
            layout=(
                Section("O le pese o le alu aʻe"),
                *(Para("Poetry", (n,)) for n in range(1, 9)),
            ),
        ),
    ),
)


TUVALUAN_CHAPTERS = LanguageSource(
    lang=TUVALUAN.name,
    voice=TUVALUAN.voice,
    base_speed_wpm=170,
    formats={
        "GEN_002": AudioFormat("mp3", "96k"),
        "EXO_016": AudioFormat("mp4", "48k"),
        "PSA_091": AudioFormat("wav"),
        "LUK_005": AudioFormat("mp3", "64k"),
        "ACT_002": AudioFormat("mp3", "64k"),
    },
    chapters=(
        ChapterSource(
            rec="GEN_002",
            book_title="Kenese",
            chapter_heading="Mataupu 2",
            spoken_heading="Te Tusi o Kenese, mataupu lua.",
            verses=(
                "I te aso ne faite ei te kelekele mo te vanimonimo, ne seki tupu se lakau i te vao, "
                "me ne seki tō mai se ua.",
                "Kae ne pupuna se vai mai te kelekele, o fakasusu te eleele.",
                "Ne faite ne te Aliki te Atua te tagata mai te efu o te eleele, kae ne ifi ne ia "
                "te mānava{a} o te ola ki ana isu; ne ola ei te tagata.",
                "Ne fakatoka ne te Aliki te Atua se fatoaga i Etena i te itu ki sasae, "
                "kae ne fakanofo ne ia i ei te tagata ne faite ne ia.",
                "Ne fakatupu ne ia a lakau e gali kae fua lelei, mo te lakau o te ola "
                "i te ogatotonu o te fatoaga, mo te lakau o te iloaga o te lei mo te masei.",
                "Ne tafe mai se vaitafe mai Etena ke fakasusu te fatoaga, kae ne mavae ei ki vaitafe e fā.",
                "Te igoa o te vaitafe muamua ko Pisona; e tafe fakataka i te fenua o Havila, "
                "kolā e maua ei te aulo.",
                "Ne ave ne te Aliki te Atua te tagata o fakanofo i te fatoaga o Etena, "
                "ke galue kae ke tausi ki ei.",
                "Ne fakamoegase ne te Atua te tagata, kae ne ave ne ia se ivi kaokao "
                "o te tagata, o faite ei se fafine.",
            ),
            layout=(
                Section("Te fatoaga i Etena"),
                Para("Normal", (1, 2, 3)),
                Para("Normal", (4, 5)),
                Para("Verse", (6, 7)),
                Section("Te fafine muamua"),
                Para("Verse", (8, 9)),
            ),
            footnotes=("a 2:7 Io me: te agaga o te ola.",),
        ),
        ChapterSource(
            rec="EXO_016",
            book_title="Esoto",
            chapter_heading="Mataupu 16",
            spoken_heading="Te Tusi o Esoto, mataupu sefulu ono.",
            verses=(
                "Ne olo atu te kautama o Isalaelu mai Elimi, kae ne taunu latou ki te toafa o Sini, "
                "i te vā o Elimi mo Sinai.",
                "Ne muimui te fakapotopotoga kātoa ki a Mose mo Alona i te toafa.",
                "Ne fetagisi latou, Manafai ne mamate matou i Aikupito, i tafa o ipu moa, "
                "i te kakai ki falaoa ke makona matou.",
                "Ne fai mai te Aliki ki a Mose, Ka fakatō ne au se falaoa mai te lagi mō koutou; "
                "ka olo atu te kautama i aso takitasi o ao te vaegā mō te aso tenā.",
                "I te afiafi ne ōmai a manu kolo{a} o ufiufi te nofoaga; kae i te taeao ne takoto te sau "
                "takamilo i te nofoaga.",
                "Kae ne mafuli aka te sau, onoono la, ne takoto i te fuga o te toafa se mea tāfoliki, "
                "lilikiliki, pelā me se kiona.",
                "Ne fai atu a Mose ki a latou, Ko te falaoa tenā ne tuku atu ne te Aliki mō koutou ke kai.",
                "Ne ao ne nisi ke lasi kae ne ao ne nisi ke tokoitiiti; kae ne seai se mea ne toe "
                "ki te tino ne lasi tena ao, kae ne seai se mea ne mativa te tino ne ao foliki.",
                "Ne fakaigoa ne te kāiga o Isalaelu te mea tenā ko te mana; e pelā me se fatu koliana, "
                "kae ko tena malie e pelā me se keke ne fai ki te meli.",
            ),
            layout=(
                Section("Ne muimui te kautama i te toafa"),
                Para("Normal", (1, 2, 3)),
                Section("Te mana mo manu kolo"),
                Para("Normal", (4, 5, 6)),
                Para("Verse", (7, 8, 9)),
            ),
            footnotes=("a 16:13 Manu kolo: se vaegā manu lele e pelā me se lupe.",),
        ),
        ChapterSource(
            rec="PSA_091",
            book_title="Salamo",
            chapter_heading="Salamo 91",
            spoken_heading="Te Salamo ivagafulu mo te tasi.",
            verses=(
                "Ko te tino e api i te malu o te Mea Maluga, ka moe i lalo o te ata o te Mea Malosi.",
                "Ka fai atu au ki te Aliki, Ko koe toku sulufaiga mo toku pā puipui, "
                "ko toku Atua telā e fakatuanaki au ki ei.",
                "Me ka fakasao ne ia koe mai te mailei a te tino seu lupe, mai te mageso fakamataku.",
                "Ka puipui ne ia koe ki ona fulu, kae i lalo o ona kapakau ka malu ei koe; "
                "ko tena fakamaoni se talipupu mo se pā.",
                "E se fefe koe i te fakamataku o te pō, me i te ū e lele i te ao,",
                "Me i te mageso e sāvali i te pouliuli, me i te fakamasei e fakaseai i te mālūga o te aso.",
                "E tokoafe ka paku i tou feitu, kae e tokosefulu afe i tou lima taumatau; "
                "kae e se pili atu ki a koe.",
                "Ka kilokilo fua koe ki ou mata, kae ka lavea ne koe te taui o tino amio pikopiko.",
                "Me ne fai ne koe te Aliki mo tou sulufaiga, te Mea Maluga mo tou api.",
            ),
            layout=(
                Section("Te Aliki ko te sulufaiga"),
                *(Para("Poetry", (n,)) for n in range(1, 10)),
            ),
            speed_offset_wpm=-15,
        ),
        ChapterSource(
            rec="LUK_005",
            book_title="Luka",
            chapter_heading="Mataupu 5",
            spoken_heading="Te Tala Lei ne tusi ne Luka, mataupu lima.",
            verses=(
                "I te aso e tasi ne tu ei Iesu i te matafaga o te vaituloto o Kenesaleta, "
                "kae ne fakapipiki mai a tino ke fakalogo ki te muna a te Atua.",
                "Ne kilo atu a ia ki vaka e lua i te gataifale; ne ō ki uta a tino faiika, "
                "kae ne fufulu olotou upega.",
                "Ne heke a ia ki te vaka o Simona, kae ne fakamolemole atu ke tuleki teitei "
                "mai te gataifale; ne saofaki a ia o akoako a tino mai te vaka.",
                "Kae ne oti tena akoakoga, ne fai atu a ia ki a Simona, Alo atu ki te koga loloto, "
                "kae tiaki a otou upega ke puke ni ika.",
                "Ne tali atu Simona, Te pule, ne galulue i te pō kātoa kae seai se ika; "
                "kae i tau muna ka tiaki ne au a upega.",
                "Kae ne fai ne latou penā, ne puke ne latou se fuifui ika e uke, telā ne māsae ei "
                "olotou upega.",
                "Ne talo atu latou ki olotou taugasoa i te suā vaka ke fesoasoani mai; "
                "ne fakapuke a vaka e lua, telā ne kamata o goto.",
                "Kae ne iloa ne Simona Petelo, ne punou a ia i vae o Iesu, o fai atu, Aliki, "
                "ke fano keatea koe, me se tino agasala au.{*}",
                "Ne fai atu Iesu ki a Simona, Sa mataku; mai te taimi nei ka puke ne koe a tino.",
            ),
            layout=(
                Section("Ne kalaga ne Iesu a tino faiika"),
                Para("Normal", (1, 2, 3)),
                Para("Normal", (4, 5)),
                Para("Verse", (6, 7)),
                Para("Verse", (8, 9)),
            ),
            footnotes=("* 5:8 Simona Petelo: ko Simona telā ne fakaigoa ne Iesu ko Petelo.",),
        ),
        ChapterSource(
            rec="ACT_002",
            book_title="Galuega",
            chapter_heading="Mataupu 2",
            spoken_heading="Te Tusi o Galuega a Apositolo, mataupu lua.",
            verses=(
                "Kae ne oko mai te aso o te Penitekoso, ne fakatasi latou kātoa i te potu.",
                "Ne fakafuasei ne lagona se pisaga e fakatusa ki se matagi mamafa e agi, "
                "kae ne fakatumu ne ia te fale kātoa ne nofonofo ei latou.",
                "Ne fakaasi mai ki a latou a alelo e fakatusa ki afi, ne mavaevae kae ne tautau "
                "ki a latou takitokotasi.",
                "Ne fakatumu latou kātoa ki te Agaga Tapu{a}, kae ne faipati latou i gagana kesekese, "
                "e tusa mo te atamai ne tuku atu ne te Agaga ki a latou.",
                "Ne nonofo i Ielusalema a Iutaia lotu, mai atufenua kātoa o te lalolagi.",
                "Kae ne lagona te pisaga tenā, ne fakatasi mai te motu o tino, kae ne fenumiai latou, "
                "me ne lagona ne latou takitokotasi te gagana totino e faipati ei.",
                "Ne ofo kae ne fakaofoofo latou, o fai, A tino konei e faipati mai, "
                "e se ne tino Kalilaia?",
                "Kae pefea a tatou e lagona ei ne tatou takitokotasi te gagana o te atufenua "
                "ne fanau mai ei tatou?",
                "Ko Patia, mo Metia, mo Elamo, mo tino e nonofo i Mesopotamia, i Iutaia mo Kapatokia, "
                "i Ponito mo Asia, i Fulukia mo Pamefulia, i Lipia mo Kuleni, mo tino asiasi mai Loma.",
            ),
            layout=(
                Section("Te Agaga Tapu i te aso o te Penitekoso"),
                Para("Normal", (1, 2, 3, 4)),
                Section("Ne ofo te motu o tino"),
                Para("Normal", (5, 6)),
                Para("Verse", (7, 8, 9)),
            ),
            footnotes=("a 2:4 Agaga Tapu: te Agaga o te Atua.",),
        ),
    ),
)

CORPUS_LANGUAGES: dict[str, LanguageSource] = {
    src.lang: src for src in (SAMOAN_CHAPTERS, PORTUGUESE_CHAPTERS, TUVALUAN_CHAPTERS)
}
