"""User themes: TOML files in the home's themes/ folder, read by the loader of tunedeck's own."""

from tunedeck.core.home import settings_file, tunedeck_home
from tunedeck.themes import THEMES, load_themes
from tunedeck.tui.app import TunedeckApp

from .harness import wait_until

SOLARIZED = """\
name = "solarized-ish"
dark = true
primary = "#268bd2"
accent = "#b58900"
background = "#002b36"
"""


async def test_a_theme_file_is_offered_and_a_bad_one_is_one_line(project):
    themes = tunedeck_home() / "themes"
    themes.mkdir(parents=True)
    (themes / "solarized.toml").write_text(SOLARIZED)
    (themes / "broken.toml").write_text('name = "broken"\nprimary = "#268bd2"\nsurface = "sea green-ish"\n')
    app = TunedeckApp(project=project)
    async with app.run_test(size=(100, 30)) as pilot:
        assert "solarized-ish" in app.available_themes and "broken" not in app.available_themes
        lines = await wait_until(pilot, lambda: [n.message for n in app._notifications
                                                 if n.title == "Theme skipped"], what="the bad file reported")
        assert lines == [f"{themes / 'broken.toml'}:3: surface = 'sea green-ish' is not a colour "
                         "(use #rrggbb, rgb(r, g, b) or a colour name)"]
        await pilot.press("ctrl+t", "ctrl+t")  # dark, light, then the user's
        assert app.theme == "solarized-ish"
        # The plots' colours come from the theme's own when it names none.
        assert app.theme_variables["plot-train"] == "#268bd2"
        await pilot.pause()
    assert 'theme = "solarized-ish"' in settings_file().read_text()
    again = TunedeckApp(project=project)
    async with again.run_test(size=(100, 30)):
        assert again.theme == "solarized-ish"


def test_tunedecks_themes_come_from_the_same_loader(tmp_path):
    assert [t.name for t in THEMES] == ["tunedeck-dark", "tunedeck-light"]
    assert THEMES[0].variables["plot-val"] == "#ffaf00" and THEMES[1].dark is False
    cases = {
        "no_name.toml": ('primary = "red"\n', "1: a theme needs a name"),
        "typo.toml": ('name = "t"\nprimry = "red"\n', "2: unknown key 'primry'"),
        "not_toml.toml": ('name = "t"\nprimary =\n', "2: invalid TOML"),
        "variable.toml": ('name = "v"\nprimary = "red"\n[variables]\nplot-val = "blu"\n',
                          "4: variables.plot-val = 'blu' is not a colour"),
        "dark.toml": ('name = "d"\nprimary = "red"\ndark = "yes"\n', "3: dark is true or false"),
        "taken.toml": ('name = "tunedeck-dark"\nprimary = "red"\n', "1: a theme named 'tunedeck-dark' is already"),
    }
    for file, (text, _) in cases.items():
        (tmp_path / file).write_text(text)
    themes, problems = load_themes(tmp_path, taken=("tunedeck-dark",))
    assert themes == []
    assert len(problems) == len(cases)
    for problem in problems:
        file, _, rest = problem.partition(":")
        assert rest.startswith(cases[file.rpartition("/")[2]][1]), problem
